"""Writer processes for the SIGKILL tests (run as ``python writers.py KIND PATH``; not a test).

Each writes version 1, 2, 3... of one big file (or checkpoint directory) through arvla's real
writer, forever, printing ``saved <v>`` after each complete save. Every value of version v is v,
so a reader can tell a complete version from a torn one.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

JOINTS = ["j1", "j2", "j3"]
T, F, H, W = 50, 40, 480, 640  # images: 40 x 480 x 640 x 3 = 37 MB, so a write takes a while


def episode_arrays(v: int) -> dict[str, np.ndarray]:
    return {"states": np.full((T, 3), v, np.float32), "actions": np.full((T, 3), v, np.float32),
            "frame_tokens": np.full((F, 2, 8), v, np.float32),
            "frame_steps": np.arange(F, dtype=np.int64),
            "images": np.full((F, H, W, 3), v % 256, np.uint8)}


def checkpoint_model(v: int):  # noqa: ANN201
    import torch

    from arvla_action_expert.model import ARExpert, ExpertConfig

    cfg = ExpertConfig(state_dim=3, action_dim=3, prefix_dim=8, max_prefix_tokens=4, n_embd=256,
                       n_layer=4, n_head=4, ffn=1024, window=8, head="regression")
    model = ARExpert(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(v))
    return model


def save(kind: str, path: pathlib.Path, v: int, model) -> None:  # noqa: ANN001
    if kind == "checkpoint":
        import torch

        from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
        from arvla_action_expert.normalize import Normalizer

        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(v))
        save_checkpoint(path, model, state_norm=Normalizer.identity(3), target_norm=Normalizer.identity(3),
                        meta=CheckpointMeta(control_rate_hz=20.0, joint_names=JOINTS, stage=2, step=v))
        return
    arrays = episode_arrays(v)
    meta = {"control_rate_hz": np.float64(20.0), "model_id": np.str_(""),
            "joint_names": np.array(JOINTS), "task": np.str_(f"v{v}")}
    if kind == "episode_eval":
        from arvla_data.episodes import save_episode

        save_episode(path, {**arrays, **meta})
    elif kind == "episode_data":
        from arvla_action_expert.data import Episode, save_episode_npz

        save_episode_npz(path, Episode(arrays["states"], arrays["actions"], arrays["frame_tokens"],
                                       arrays["frame_steps"], joint_names=JOINTS, task=f"v{v}",
                                       images=arrays["images"]))
    elif kind == "episode_sim":
        from arvla_sim.collect import save_episode

        save_episode({**arrays, "control_rate_hz": 20.0, "model_id": "", "joint_names": JOINTS,
                      "task": f"v{v}", "instruction": "", "seed": v, "success": True}, path)
    else:
        raise SystemExit(f"unknown writer kind {kind}")


def main() -> None:
    kind, path = sys.argv[1], pathlib.Path(sys.argv[2])
    model = checkpoint_model(0) if kind == "checkpoint" else None
    v = 1
    while True:
        save(kind, path, v, model)
        print(f"saved {v}", flush=True)
        v += 1


if __name__ == "__main__":
    main()

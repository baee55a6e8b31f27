"""Ablations of the AR expert's recipe against the chunked baselines, in process, on held-out seeds.

    python bench/ablations.py --artefacts artifacts/demo/full [--rows demo,window4,...]
        [--seeds 100000:100050] [--tasks pick_lift push cued_reach] [--out runs/ablations]
        [--threads 1] [--list]

Each row is the demo's expert recipe (config/expert_demo.yaml, the demo's stage-1/stage-2 steps)
with a few settings changed, trained on the demo's episodes (the same for every row), then run
with ``arvla_eval.inprocess`` (deterministic: the same seeds, the node's seamless command path,
perception lag 2 steps) beside the chunked baseline that ``arvla eval --artefacts`` trained on
those episodes (``chunk``, ``chunk_te``). Checkpoints and records are cached under ``--out`` by
a hash of the row's settings, so rows can be run in several processes (one per core, e.g.
``--rows a,b`` and ``--rows c,d``) and the table printed from the cache afterwards
(``--table``). Prints success with 95 % Wilson intervals and RMS jerk with 95 % intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
import time
from typing import Any

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

# row name -> (what it tests, training overrides {"model.x": v, "data.y": v}, expert node params)
ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "demo": ("the demo's expert (ensemble_steps 4)", {}, {}),
    "ens1": ("each token's own prediction (ensemble_steps 1)", {}, {"ensemble_steps": 1}),
    "ens8": ("mean over the last 8 tokens (ensemble_steps 8)", {}, {"ensemble_steps": 8}),
    "window4": ("window 4: 3 steps of history per layer", {"model.window": 4}, {}),
    "hist8": ("8 history steps in training sequences", {"data.history": 8}, {}),
    "hdrop05": ("history_drop 0.5 (proprio/action history tokens dropped)", {"data.history_drop": 0.5}, {}),
    "fdrop0": ("every camera frame arrives in training (frame_drop 0; the demo drops half, "
               "so it trains on staler prefixes than the graph delivers)", {"data.frame_drop": 0.0}, {}),
    "prev_action": ("conditioned on the previous commanded action", {"model.use_prev_action": True}, {}),
    "absolute": ("absolute targets (not deltas to the measured state)", {"model.delta_actions": False}, {}),
    "binned": ("binned head (64 bins) instead of regression", {"model.head": "binned"}, {}),
    "predict16": ("multi-token prediction over 16 steps", {"model.predict_steps": 16}, {}),
    "p16e16": ("predictions over 16 steps, the mean of the last 16 executed (like chunk_te's "
               "16 overlapping chunks)", {"model.predict_steps": 16}, {"ensemble_steps": 16}),
    "aux16": ("auxiliary chunk head (16 steps)", {"model.aux_chunk": 16}, {}),
    "long": ("2x the training steps", {"steps_x": 2}, {}),
    "vision2000": ("all 2000 steps with the prefix, like the baseline (stage 1: 1 step, stage 2: "
                   "2000)", {"steps": [1, 2000]}, {}),
}


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def train_row(name: str, overrides: dict[str, Any], demo: Any, episodes: list[Any],
              out: pathlib.Path, perception: dict[str, Any]) -> pathlib.Path:
    """The row's stage-2 checkpoint (trained here unless cached)."""
    from arvla_action_expert.data import InMemoryEpisodes
    from arvla_action_expert.train import TrainConfig, train
    from arvla_base.config import from_dict, load_config, to_dict

    tcfg = load_config(TrainConfig, REPO / demo.train.expert_config)
    data = to_dict(tcfg)
    steps_x = 1
    steps = (demo.train.stage1_steps, demo.train.stage2_steps)
    for key, value in overrides.items():
        if key == "steps_x":
            steps_x = int(value)
            continue
        if key == "steps":
            steps = (int(value[0]), int(value[1]))
            continue
        section, field = key.split(".")
        data[section][field] = value
    data["num_threads"] = torch.get_num_threads()
    tcfg = from_dict(TrainConfig, data)
    steps = (steps[0] * steps_x, steps[1] * steps_x)
    d = out / "train" / _key(to_dict(tcfg), steps, len(episodes))  # rows with the same training share it
    if (d / "DONE").is_file():
        return d / "stage2"
    source = InMemoryEpisodes(episodes)
    for stage, n, init in ((1, steps[0], None), (2, steps[1], d / "stage1")):
        scfg = dataclasses.replace(tcfg, optim=dataclasses.replace(
            tcfg.optim, max_steps=n, warmup_steps=min(tcfg.optim.warmup_steps, n // 10)))
        t0 = time.monotonic()
        res = train(scfg, stage=stage, out=d / f"stage{stage}", source=source, init=init,
                    progress=False, perception=perception)
        print(f"[{name}] stage {stage}: {n} steps, loss {res.losses[-1]:.4f}, "
              f"{time.monotonic() - t0:.0f} s", flush=True)
    (d / "DONE").write_text("ok\n")
    return d / "stage2"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artefacts", default="artifacts/demo/full", help="the demo's artefacts")
    ap.add_argument("--rows", default="demo", help=f"comma list of {', '.join(ROWS)}, chunk, chunk_te")
    ap.add_argument("--seeds", default="100000:100050", help="held-out seed range A:B")
    ap.add_argument("--tasks", nargs="+")
    ap.add_argument("--out", default="runs/ablations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--table", action="store_true", help="only print the table of cached rows")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args()
    if args.list:
        for name, (what, tr, node) in ROWS.items():
            print(f"{name:12s} {what}  {tr or ''} {node or ''}")
        return 0
    torch.set_num_threads(args.threads)
    from arvla.demo import load_demo_config
    from arvla_action_expert.data import NpzEpisodeDir
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_baselines.chunk import ChunkPolicy
    from arvla_base.paths import config_file
    from arvla_eval.evaluate import demo_layout
    from arvla_eval.inprocess import InProcessSetup, run_inprocess
    from arvla_eval.records import load_records, save_records
    from arvla_eval.report import report_rows, rows_markdown
    from arvla_perception.config import token_settings

    art = pathlib.Path(args.artefacts)
    layout = demo_layout(art)
    if layout is None:
        print(f"{art}: not the demo's layout (run `arvla demo` first)", file=sys.stderr)
        return 2
    demo = load_demo_config(config_file("demo.yaml"), quick=False)
    a, b = (int(x) for x in args.seeds.split(":"))
    tasks = args.tasks or layout["tasks"]
    out = pathlib.Path(args.out)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS and r not in ("chunk", "chunk_te"):
            print(f"--rows: unknown row {r!r} (--list shows them)", file=sys.stderr)
            return 2
    episodes = [ep for d in layout["episodes"] for ep in NpzEpisodeDir(d)]
    perception = token_settings(layout["perception"])
    all_records = []
    for r in rows:
        what, overrides, node = ROWS.get(r, (r, {}, {}))
        params = {**layout["expert_node"], **node}
        rec_path = out / "records" / f"{r}-{_key(overrides, params, a, b, tasks, str(layout['expert']))}.npz"
        if not rec_path.is_file() and not args.table:
            if r in ("chunk", "chunk_te"):
                base = ChunkPolicy.from_checkpoint(art / "chunk")
                mode = "chunk" if r == "chunk" else "temporal_ensemble"
                policy: Any = base.with_exec(dataclasses.replace(base.exec, mode=mode))
                params = {k: v for k, v in params.items() if k != "ensemble_steps"}
            elif not overrides:  # the demo's own expert, as `arvla demo` trained it
                policy = ExpertPolicy.from_checkpoint(layout["expert"])
            else:
                policy = ExpertPolicy.from_checkpoint(train_row(r, overrides, demo, episodes, out,
                                                                perception))
            t0 = time.monotonic()
            recs = run_inprocess({r: policy}, InProcessSetup(
                tasks=tasks, seeds=list(range(a, b)),
                max_seconds_per_task={k: float(v) for k, v in (layout["max_seconds"] or {}).items()},
                sim_params=layout["sim"], perception_params=layout["perception"],
                expert_params=params, progress=False))
            rec_path.parent.mkdir(parents=True, exist_ok=True)
            save_records(rec_path, recs)
            print(f"[{r}] evaluated {len(recs)} episodes in {time.monotonic() - t0:.0f} s", flush=True)
        if rec_path.is_file():
            all_records += load_records(rec_path)
    if all_records:
        print(f"\nIn process, deterministic (perception lag 2 steps), seeds {a}..{b - 1}:")
        print(rows_markdown(report_rows(all_records)))
        for r in rows:
            if r in ROWS:
                print(f"- {r}: {ROWS[r][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much an AR expert's held-out loss rests on its memory: the stage-2 loss on held-out
demonstrations with the full memory, and with every step token's memory cut to its last 4 steps
and to itself alone (prefix + current state only).

    python bench/history_reliance.py --val runs/ablations/demos/*/seeds150_150 \
        --runs "hdrop05=runs/ablations/train/KEY/stage2" "longh=runs/ablations/train/KEY2/stage2"

A policy that leans on its history more than on the prefix (copying its own motion, "causal
confusion") shows a larger ratio cut/full. The batches are ``train.validation_batches`` of the
checkpoint's own training config (the same as its ``val_curve.json``, whose last point the
"full" column reproduces when ``--val`` is the set it was trained against).
"""

from __future__ import annotations

import argparse
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", nargs="+", required=True, help="directories of held-out .npz episodes")
    ap.add_argument("--runs", nargs="+", required=True, metavar="LABEL=CKPT",
                    help="labelled stage-2 expert checkpoints")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from arvla_action_expert.checkpoint import load_checkpoint
    from arvla_action_expert.data import InMemoryEpisodes, NpzEpisodeDir
    from arvla_action_expert.train import TrainConfig, batch_loss, validation_batches
    from arvla_base.config import from_dict

    episodes = InMemoryEpisodes([ep for d in args.val for ep in NpzEpisodeDir(d)])
    print("| checkpoint | full memory | last 4 steps | itself only | itself / full |")
    print("|---|---|---|---|---|")
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep:
            print(f"--runs: {item!r} is not LABEL=CKPT", file=sys.stderr)
            return 2
        ck = load_checkpoint(path)
        cfg = from_dict(TrainConfig, ck.train_config)
        batches = validation_batches(cfg, 2, episodes, ck.state_norm, ck.target_norm)
        model = ck.model.eval()
        losses = []
        with torch.no_grad():
            for horizon in (None, 4, 1):
                total = 0.0
                for batch, mask in batches:
                    if horizon is not None:
                        T = mask.shape[-1]
                        age = torch.arange(T).view(T, 1) - torch.arange(T).view(1, T)
                        mask = mask & (age < horizon).unsqueeze(0)
                    total += float(batch_loss(model, batch, mask))
                losses.append(total / len(batches))
        print(f"| {label} | {losses[0]:.4f} | {losses[1]:.4f} | {losses[2]:.4f} | "
              f"{losses[2] / losses[0]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plot held-out loss curves (``val_curve.json`` beside checkpoints) of trainings side by side.

    python bench/val_curves.py --runs "AR 2000=runs/ablations/train/KEY" \
        "chunk 4000=runs/ablations/chunk/KEY" --out docs/val_curves.png

Each DIR is a checkpoint directory with ``val_curve.json`` (``arvla train --val-data``,
``arvla eval train-baseline --val-data``, ``bench/ablations.py --val``) or a directory holding
``stage1`` / ``stage2`` checkpoints (an AR expert trained in two stages: stage 2's steps are
counted after stage 1's). AR experts and chunked baselines train on different losses (L1 over
8-step delta plans against L1 over 16-step absolute chunks, each in its own normalised units),
so they are drawn in separate panels; a curve that turns up is over-fitting its demonstrations.
Prints each curve's minimum and last point.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def read_curve(path: pathlib.Path) -> tuple[list[int], list[float], list[int]]:
    """(global steps, losses, steps where a stage starts) of a checkpoint or a two-stage run."""
    if (path / "val_curve.json").is_file():
        doc = json.loads((path / "val_curve.json").read_text(encoding="utf-8"))
        return list(doc["steps"]), list(doc["losses"]), []
    steps: list[int] = []
    losses: list[float] = []
    starts: list[int] = []
    offset = 0
    for stage in ("stage1", "stage2"):
        f = path / stage / "val_curve.json"
        if not f.is_file():
            continue
        doc = json.loads(f.read_text(encoding="utf-8"))
        meta = json.loads((path / stage / "config.json").read_text(encoding="utf-8"))["meta"]
        starts.append(offset)
        steps += [offset + s for s in doc["steps"]]
        losses += list(doc["losses"])
        offset += int(meta["step"])
    if not steps:
        raise SystemExit(f"{path}: no val_curve.json (train with --val-data / --val)")
    return steps, losses, starts[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, metavar="LABEL=DIR",
                    help="labelled checkpoint (or two-stage run) directories; a label starting "
                         "with 'chunk' goes to the baseline panel")
    ap.add_argument("--out", default="val_curves.png", help="PNG to write")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ar, ax_chunk) = plt.subplots(1, 2, figsize=(10, 3.8))
    for item in args.runs:
        label, sep, d = item.partition("=")
        if not sep:
            print(f"--runs: {item!r} is not LABEL=DIR", file=sys.stderr)
            return 2
        steps, losses, starts = read_curve(pathlib.Path(d))
        ax = ax_chunk if label.startswith("chunk") else ax_ar
        line, = ax.plot(steps, losses, marker=".", label=label)
        for s in starts:
            ax.axvline(s, color=line.get_color(), lw=0.6, ls=":")
        i = min(range(len(losses)), key=losses.__getitem__)
        print(f"{label}: held-out loss {losses[-1]:.4f} at step {steps[-1]}, lowest {losses[i]:.4f} "
              f"at step {steps[i]}")
    for ax, title in ((ax_ar, "AR expert (dotted: stage 2 starts)"), (ax_chunk, "chunked baseline")):
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("held-out L1 (normalised)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

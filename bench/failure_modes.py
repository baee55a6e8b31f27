"""How policies fail pick_lift and push, side by side, from the sim's ground truth.

    python bench/failure_modes.py --artefacts artifacts/demo/large \\
        --policy ar=expert:runs/ablations/train/KEY/stage2 \\
        --policy chunk_te=chunk_te:runs/ablations/chunk/KEY [--seeds 100000:100050] \\
        [--tasks pick_lift push] [--node-param ensemble_steps=16] [--out runs/failure_modes]

Each policy runs the held-out seeds in process exactly as ``bench/ablations.py`` evaluates it
(deterministic, perception lag 2 steps, the demo recipe's node parameters from config/demo.yaml
``demo.expert``, ``--node-param`` over them), with an
``arvla_eval.probes.StepLog`` reading the hand, object and goal every step. Per task it prints:

- pick_lift: the hand's offset from the cube when the fingers start to close (mean dx / dy:
  a bias; median and 90th percentile |dxy|: the spread, for successful and failed episodes;
  mean along the hand's approach from its start: < 0, it stopped short);
- push: where the hand comes down against the demonstrator's descent point (``along`` > 0:
  onto the block instead of behind it; along the hand's own approach: < 0, it stopped short,
  and how that error grows with the approach's length), the hand's height while the block moves (the
  demonstrator pushes at 0.065 m; ~0.098 m rides on the block's top edge), and the block's
  progress toward the target.

KIND is ``expert`` (an AR checkpoint), ``chunk`` or ``chunk_te`` (a chunked baseline's
checkpoint executed as chunks or with temporal ensembling). One process per policy; run
several in parallel on several cores. JSON per policy under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any

import numpy as np
import torch

from arvla_baselines.chunk import POLICY_MODES

REPO = pathlib.Path(__file__).resolve().parents[1]
KINDS = {"expert": None, **POLICY_MODES}   # -> the chunk checkpoint's execution mode


def load_policy(kind: str, path: str, node_params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(policy, the node parameters it runs with), as ``arvla eval`` gives them."""
    from arvla_baselines.chunk import ChunkPolicy
    from arvla_eval.evaluate import node_params_for
    from arvla_eval.replay import load_any_policy

    policy = load_any_policy(path, mode=KINDS[kind])
    if isinstance(policy, ChunkPolicy) != (kind != "expert"):
        raise ValueError(f"{path}: a {type(policy).__name__} checkpoint, not a {kind!r} one")
    return policy, node_params_for(policy, node_params)


def probe(name: str, policy: Any, params: dict[str, Any], layout: dict[str, Any],
          tasks: list[str], seeds: list[int], lag_steps: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Per task, one dict per episode: seed, success and the task's probe; ``lag_steps``: the
    perception latency in control periods (the evaluation's 2)."""
    from arvla_eval.inprocess import EpisodeRunner, InProcessSetup
    from arvla_eval.probes import StepLog, grasp_offset, push_motion
    from arvla_sim.experts import PushExpert

    setup = InProcessSetup(tasks=tasks, seeds=seeds, max_seconds_per_task=layout["max_seconds"] or {},
                           sim_params=layout["sim"], perception_params=layout["perception"],
                           expert_params=params, lag_steps=lag_steps, progress=False)
    runner = EpisodeRunner({name: policy}, setup)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for task in tasks:
            rows = out[task] = []
            t0 = time.monotonic()
            half = float(runner.env(task)[0].task.half) if task == "push" else 0.0
            for seed in seeds:
                log = StepLog(task)
                rec = runner.episode((name, task, seed), before_step=log)
                a = log.arrays()
                if task == "pick_lift":
                    m = dataclasses.asdict(grasp_offset(a["hand"], a["obj"], a["opening"]))
                else:
                    m = dataclasses.asdict(push_motion(a["hand"], a["obj"], a["goal"], half=half,
                                                       approach_gap=PushExpert.approach_gap))
                rows.append({"seed": seed, "success": bool(rec.success), **m})
            print(f"[{name}] {task}: {sum(r['success'] for r in rows)}/{len(rows)} in "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    finally:
        runner.close()
    return out


def _stats(values: list[float]) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(v.mean()), float(np.median(v)), float(np.percentile(v, 90))


def _corr(a: list[float], b: list[float]) -> float:
    x = np.asarray([(u, v) for u, v in zip(a, b) if np.isfinite(u) and np.isfinite(v)], np.float64)
    return float(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) if len(x) > 2 else float("nan")


def _sd(x: list[float]) -> float:
    """Population spread; nan (no warning) for no values."""
    return float(np.std(x)) if x else float("nan")


def _residual_sd(closed: list[dict[str, Any]]) -> float:
    """Lateral (y) grasp error's spread once its linear trend over the cube's y placement (a
    bias that grows with the reach) is removed: the scatter no placement explains. nan for
    records without the placement (before 2026-12-07 session 15) or fewer than 3 grasps."""
    pts = [(r["cube_y"], r["dy"]) for r in closed if np.isfinite(r.get("cube_y", float("nan")))]
    if len(pts) < 3:
        return float("nan")
    y, d = np.asarray(pts).T
    return float(np.std(d - np.polyval(np.polyfit(y, d, 1), y)))


def _closing(closed: list[dict[str, Any]]) -> str:
    """Mean hand xy move, hand rise and cube shove (cm) while the fingers close, how many grasps
    still hold the cube (fingers > 1.5 cm apart) 8 steps on and how many cubes rise > 5 cm: a
    grasp that held and did not lift lost the cube afterwards. '-' for records without them
    (before 2026-12-07 session 15)."""
    keys = ("close_move", "close_rise", "cube_shift", "opening_after", "cube_lift")
    rows = [r for r in closed if all(np.isfinite(r.get(k, float("nan"))) for k in keys)]
    if not rows:
        return "-"
    m = [float(np.mean([r[k] for r in rows])) * 100 for k in keys[:3]]
    held = sum(1 for r in rows if r["opening_after"] > 0.015)   # at the cube's width, not closed
    lifted = sum(1 for r in rows if r["cube_lift"] > 0.05)
    return f"{m[0]:.2f} / {m[1]:+.2f}, {m[2]:.2f}; held {held}, lifted {lifted}"


def _descent(rows: list[dict[str, Any]]) -> str:
    """When the hand comes down (first step below 0.12 m): mean ± sd over the episodes and its
    least-squares slope over the approach's length (steps per 10 cm). The clean min_jerk
    demonstrator of the `--large` data: 54.8 ± 3.9, 5.9 (its 111 kept pushes, the length taken
    as its start -> descent point, where it comes down within 0.4 cm of the aim)."""
    ok = [r for r in rows if r["descent_step"] >= 0 and np.isfinite(r["approach_dist"])]
    if len(ok) < 3:
        return "-"
    step = np.array([r["descent_step"] for r in ok], float)
    dist = np.array([r["approach_dist"] for r in ok], float)
    slope = float(np.polyfit(dist * 10, step, 1)[0])
    return f"{step.mean():.1f} ± {step.std():.1f}, {slope:+.1f}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    picks = {n: r["pick_lift"] for n, r in results.items() if "pick_lift" in r}
    if picks:
        lines += ["pick_lift: hand - cube centre when the fingers start to close (cm)", "",
                  "| policy | episodes | success | close step | mean dx | mean dy "
                  "| median abs dxy (succ / fail) | p90 abs dxy | sd dx / dy | sd dy about its "
                  "line on the cube's y | mean dz | mean along the approach (-: short) "
                  "| while closing: hand xy move / rise, cube shoved (means, cm); grasps holding "
                  "the cube 8 steps on, cubes lifted > 5 cm |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, rows in picks.items():
            closed = [r for r in rows if r["step"] >= 0]
            dxy = [float(np.hypot(r["dx"], r["dy"])) for r in closed]
            med = lambda ok: _stats([float(np.hypot(r["dx"], r["dy"])) for r in closed  # noqa: E731
                                     if r["success"] == ok])[1] * 100
            lines.append(f"| {n} | {len(rows)} | {sum(r['success'] for r in rows)} | "
                         f"{_stats([r['step'] for r in closed])[0]:.0f} | "
                         f"{_stats([r['dx'] for r in closed])[0] * 100:+.2f} | "
                         f"{_stats([r['dy'] for r in closed])[0] * 100:+.2f} | "
                         f"{med(True):.2f} / {med(False):.2f} | {_stats(dxy)[2] * 100:.2f} | "
                         f"{_sd([r['dx'] for r in closed]) * 100:.2f} / "
                         f"{_sd([r['dy'] for r in closed]) * 100:.2f} | "
                         f"{_residual_sd(closed) * 100:.2f} | "
                         f"{_stats([r['dz'] for r in closed])[0] * 100:.2f} | "
                         f"{_stats([r['approach'] for r in closed])[0] * 100:+.2f} | "
                         f"{_closing(closed)} |")
        lines.append("")
    pushes = {n: r["push"] for n, r in results.items() if "push" in r}
    if pushes:
        lines += ["push: descent point (hand - the demonstrator's, cm), height while the block "
                  "moves (m)", "",
                  "| policy | episodes | success | mean along (+: onto the block) | median lateral "
                  "| mean along the approach (-: short) | corr(approach error, distance) "
                  "| median push height | episodes pushing above 0.09 m | mean progress (cm) "
                  "| descent step mean ± sd, steps per 10 cm of approach |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, rows in pushes.items():
            h = [r["push_height"] for r in rows]
            lines.append(f"| {n} | {len(rows)} | {sum(r['success'] for r in rows)} | "
                         f"{_stats([r['along'] for r in rows])[0] * 100:+.2f} | "
                         f"{_stats([r['lateral'] for r in rows])[1] * 100:.2f} | "
                         f"{_stats([r['approach'] for r in rows])[0] * 100:+.2f} | "
                         f"{_corr([r['approach'] for r in rows], [r['approach_dist'] for r in rows]):+.2f} | "
                         f"{_stats(h)[1]:.3f} | {sum(1 for x in h if np.isfinite(x) and x > 0.09)} | "
                         f"{_stats([r['progress'] for r in rows])[0] * 100:.1f} | "
                         f"{_descent(rows)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artefacts", help="the demo's artefacts (arvla demo); not for --table")
    ap.add_argument("--policy", action="append", default=[], metavar="NAME=KIND:CKPT",
                    help=f"a policy to probe (KIND one of {list(KINDS)}); repeatable")
    ap.add_argument("--seeds", default="100000:100050", help="held-out seed range A:B")
    ap.add_argument("--tasks", nargs="+", default=["pick_lift", "push"])
    ap.add_argument("--out", default=str(REPO / "runs" / "failure_modes"))
    ap.add_argument("--node-param", action="append", default=[], metavar="KEY=VALUE",
                    help="an expert-node parameter over the demo recipe's (e.g. ensemble_steps=16 "
                         "for a bench/ablations.py row that sets it); repeatable")
    ap.add_argument("--lag-steps", type=int, default=2,
                    help="perception latency in control periods (the evaluation's: 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--table", action="store_true", help="only print the table of --out's JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    if args.table:
        results = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
        print(table(results) if results else f"{out}: no results")
        return 0 if results else 1
    from arvla_eval.evaluate import demo_layout

    layout = demo_layout(pathlib.Path(args.artefacts)) if args.artefacts else None
    if layout is None:
        print(f"--artefacts {args.artefacts}: not the demo's layout (run `arvla demo` first)",
              file=sys.stderr)
        return 2
    bad = [t for t in args.tasks if t not in ("pick_lift", "push")]
    if bad or not args.policy:
        print(f"--tasks: probes exist for pick_lift and push, not {bad}" if bad else
              "give at least one --policy NAME=KIND:CKPT", file=sys.stderr)
        return 2
    try:
        a, b = (int(x) for x in args.seeds.split(":"))
    except ValueError:
        print(f"--seeds {args.seeds!r}: not A:B", file=sys.stderr)
        return 2
    specs = []
    for spec in args.policy:
        name, _, rest = spec.partition("=")
        kind, _, path = rest.partition(":")
        if not name or kind not in KINDS or not pathlib.Path(path).is_dir():
            print(f"--policy {spec!r}: not NAME=KIND:CKPT with KIND one of {list(KINDS)} and CKPT a "
                  "checkpoint directory", file=sys.stderr)
            return 2
        specs.append((name, kind, path))
    from arvla.demo import load_demo_config
    from arvla_base.paths import config_file

    # the demo recipe's node parameters, as bench/ablations.py gives its rows (not the
    # artefacts' variant's: `--large` executes ensemble_steps 16)
    node = dict(load_demo_config(config_file("demo.yaml")).expert)
    for item in args.node_param:
        key, sep, value = item.partition("=")
        if not sep or key not in node:
            print(f"--node-param {item!r}: not KEY=VALUE with KEY one of {sorted(node)}",
                  file=sys.stderr)
            return 2
        node[key] = type(node[key])(value)
    results = {}
    for name, kind, path in specs:
        try:
            policy, params = load_policy(kind, path, node)
        except ValueError as err:
            print(f"--policy {name}: {err}", file=sys.stderr)
            return 2
        results[name] = probe(name, policy, params, layout, args.tasks, list(range(a, b)),
                              lag_steps=args.lag_steps)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(results[name], indent=1))
    print(f"\nIn process, deterministic (perception lag {args.lag_steps}), seeds {a}..{b - 1}:\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

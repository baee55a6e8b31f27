"""``arvla eval``: closed-loop evaluation of the AR expert against the chunked baselines
(``arvla eval train-baseline``, ``arvla eval report``); see ``arvla_eval.evaluate``."""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import arvla_eval.evaluate as evaluate
from typing import Any, Sequence

from arvla_base.config import ConfigError
from arvla_base.paths import config_file
from arvla_eval.evaluate import (MODES, POLICIES, QUICK, EvalSetup, demo_layout,
                                 load_node_params, run_evaluation)


def _report_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="arvla eval report",
                                 description="write the report of saved evaluation records")
    ap.add_argument("records", nargs="+", help="records .npz files (save_records)")
    ap.add_argument("--out", required=True, help="report directory")
    ap.add_argument("--title", default="AR expert vs chunked baselines")
    args = ap.parse_args(argv)
    from arvla_eval.records import RecordError, load_records
    from arvla_eval.report import report_rows, rows_markdown, write_report

    try:
        records = [r for path in args.records for r in load_records(path)]
    except RecordError as err:
        print(f"arvla eval report: {err}", file=sys.stderr)
        return 2
    md = write_report(records, args.out, title=args.title)
    print(rows_markdown(report_rows(records)))
    print(f"\nreport: {md}")
    return 0


def _node_params(sim: dict[str, Any], perception: dict[str, Any], expert: dict[str, Any], *,
                 demo: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The sim, perception and expert node parameters: the files given, over the demo's own
    (when evaluating the demo's artefacts, so every policy runs in the demo's setting)."""
    if demo is None:
        return sim, perception, expert
    sim = {**demo.get("sim", {}), **sim}
    if demo.get("real_time_factor") is not None:
        sim.setdefault("real_time_factor", float(demo["real_time_factor"]))
    return sim, {**demo.get("perception", {}), **perception}, {**demo.get("expert_node", {}), **expert}


def _seed_range(text: str | None, seed0: int, default_n: int) -> list[int]:
    """``--seeds``: a count N (seeds seed0 .. seed0+N-1) or a range A:B (A .. B-1)."""
    if text is None:
        return list(range(seed0, seed0 + default_n))
    try:
        if ":" in text:
            a, b = (int(x) for x in text.split(":", 1))
            seeds = list(range(a, b))
        else:
            seeds = list(range(seed0, seed0 + int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: {text!r} is neither a count N nor a range A:B") from None
    if not seeds:
        raise ConfigError(f"--seeds: {text!r} selects no seed")
    return seeds


def _setup_from_args(args: argparse.Namespace) -> EvalSetup:
    art = pathlib.Path(args.artefacts) if args.artefacts else None

    def pick(value: str | None, default: str) -> pathlib.Path | None:
        if value:
            return pathlib.Path(value)
        return art / default if art is not None else None

    def optional_file(value: str | None, default: str) -> pathlib.Path | None:
        p = pick(value, default)
        return p if (value or (p is not None and p.is_file())) else None

    demo = demo_layout(art) if art is not None else None
    if demo is not None:
        episodes = [pathlib.Path(e) for e in args.episodes] if args.episodes else demo["episodes"]
        expert = pathlib.Path(args.expert) if args.expert else demo["expert"]
        out = pick(args.out, "eval_baselines")
        if demo.get("seed0") is not None and args.seed0 is None:
            args.seed0 = int(demo["seed0"])
        if demo.get("seeds") and args.seeds is None and not args.quick:
            args.seeds = str(demo["seeds"])
        if not args.task:
            args.task = demo["tasks"]
        if args.mode is None and demo.get("mode"):   # the demo's own evaluation mode
            args.mode = str(demo["mode"])
        if args.lag_steps is None and demo.get("lag_steps") is not None:
            args.lag_steps = int(demo["lag_steps"])
        args.chunk_config = args.chunk_config or str(config_file("chunk_demo.yaml"))
    else:
        episodes = ([pathlib.Path(e) for e in args.episodes] if args.episodes
                    else ([art / "episodes"] if art is not None else None))
        expert = pick(args.expert, "expert")
        out = pick(args.out, "eval")
    chunk = pick(args.chunk, "chunk")
    args.chunk_config = args.chunk_config or str(config_file("chunk_tiny.yaml"))
    if args.seed0 is None:
        args.seed0 = 1000
    if chunk is None or out is None:
        raise ConfigError("give --artefacts DIR, or --chunk and --out")
    quick = args.quick
    seeds = _seed_range(args.seeds, args.seed0, QUICK["seeds"] if quick else 10)
    max_seconds = args.max_seconds if args.max_seconds is not None else (
        QUICK["max_seconds"] if quick else 20.0)
    sim_params, perception_params, expert_params = _node_params(
        *(load_node_params(optional_file(given, default)) for given, default in (
            (args.sim_params, "sim.yaml"), (args.perception_params, "perception.yaml"),
            (args.expert_params, "expert_node.yaml"))), demo=demo)
    per_task = demo.get("max_seconds") if demo is not None else None
    max_seconds_per_task: dict[str, float] = (
        {str(t): float(v) for t, v in per_task.items()}
        if args.max_seconds is None and not quick and isinstance(per_task, dict) else {})
    return EvalSetup(
        max_seconds_per_task=max_seconds_per_task,
        episodes=episodes, expert=expert, chunk=chunk, chunk_config=pathlib.Path(args.chunk_config),
        out=out, tasks=args.task or ["pick_lift"],
        seeds=seeds, max_seconds=max_seconds, mode=args.mode or "realtime",
        lag_steps=2 if args.lag_steps is None else args.lag_steps,
        workers=args.workers,
        policies=[p.strip() for p in args.policies.split(",") if p.strip()],
        sim_params=sim_params, perception_params=perception_params, expert_params=expert_params,
        baseline_steps=args.baseline_steps if args.baseline_steps is not None else (
            QUICK["baseline_steps"] if quick else None),
        keep_frames=args.frames, progress=not args.no_progress)


def cli_main(argv: list[str]) -> int:
    if argv and argv[0] == "train-baseline":
        from arvla.commands.train_baseline import cli_main as train_main

        return train_main(argv[1:])
    if argv and argv[0] == "report":
        return _report_main(argv[1:])
    ap = argparse.ArgumentParser(
        prog="arvla eval", description=evaluate.__doc__.split("\n\n")[0],
        epilog="subcommands: 'arvla eval train-baseline --help', 'arvla eval report --help'")
    ap.add_argument("--artefacts", help="directory in the demo's layout (see the module doc)")
    ap.add_argument("--episodes", action="append",
                    help="training episodes (.npz dir) for the baseline (repeat for several)")
    ap.add_argument("--expert", help="AR expert checkpoint")
    ap.add_argument("--chunk", help="chunked baseline checkpoint (trained if missing)")
    ap.add_argument("--chunk-config", help="baseline train config (dims are taken from the "
                    "episodes); default config/chunk_demo.yaml for the demo's layout (sized like "
                    "the demo's expert), else config/chunk_tiny.yaml")
    ap.add_argument("--baseline-steps", type=int, help="override the baseline's optim.max_steps")
    ap.add_argument("--out", help="output directory (records.npz, report/)")
    ap.add_argument("--task", action="append", help="sim task (repeat for several); "
                    "default pick_lift")
    ap.add_argument("--seeds", help="held-out seeds per task and policy: a count N (from --seed0) "
                    "or a range A:B (A..B-1); default 10")
    ap.add_argument("--mode", choices=sorted(MODES),
                    help="how episodes run (default realtime; for --artefacts in the demo's layout "
                         "the demo's eval.mode): " + "; ".join(
                             f"{k}: {v.format(lag='--lag-steps')}" for k, v in MODES.items()))
    ap.add_argument("--workers", type=int, default=1,
                    help="inprocess mode: processes to spread the episodes over (one per core; the "
                         "records do not depend on it)")
    ap.add_argument("--lag-steps", type=int,
                    help="inprocess and lockstep modes: perception delay in control steps (default 2, "
                         "or the demo's eval.lag_steps; at real time the graph's is 2-3)")
    ap.add_argument("--seed0", type=int, help="first seed (held-out range; default 1000, or the "
                    "demo's evaluation seeds)")
    ap.add_argument("--max-seconds", type=float, help="sim seconds per episode (default 20)")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help=f"comma list of {', '.join(POLICIES)}")
    ap.add_argument("--sim-params", help="sim node parameters YAML")
    ap.add_argument("--perception-params", help="perception node parameters YAML (must make "
                    "the prefixes the checkpoints were trained on)")
    ap.add_argument("--expert-params", help="expert node parameters YAML (all policies)")
    ap.add_argument("--frames", action="store_true", help="keep camera frames (GIFs)")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI size: {QUICK['seeds']} seeds, {QUICK['max_seconds']:g} s episodes, "
                         f"{QUICK['baseline_steps']} baseline training steps")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from arvla_action_expert.checkpoint import CheckpointError
    from arvla_base.episode import EpisodeError

    try:
        setup = _setup_from_args(args)
        run_evaluation(setup)
    except (ConfigError, CheckpointError, EpisodeError) as err:
        print(f"arvla eval: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # RolloutError and friends: the graph could not run
        print(f"arvla eval: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(list(sys.argv[1:] if argv is None else argv))

"""``arvla eval``: the AR expert against chunked baselines, closed loop, same seeds, one report.

    arvla eval --episodes DIR --expert CKPT --task pick_lift --seeds 10 --out runs/eval
    arvla eval --artefacts runs/demo --quick          # the demo's layout, CI-sized
    arvla eval train-baseline --config config/chunk_tiny.yaml --data DIR --out runs/chunk
    arvla eval report runs/eval/records.npz --out runs/eval/report

Policies (``--policies``, default ``ar,chunk,chunk_te``):

- ``ar``: the AR expert checkpoint (``ExpertPolicy``);
- ``chunk``: the ACT-style chunked baseline (``chunk_policy.ChunkPolicy``) executing whole
  chunks open loop; ``chunk_te``: the same weights with temporal ensembling.

The baseline is trained on the SAME episodes (hence the same perception tokens) when its
checkpoint does not exist yet; its model dims are taken from the episodes. Every policy runs
in the unchanged ``ActionExpertNode`` with the same node parameters, behind the same sim and
perception nodes (``rollout.run_episodes``), over the same task list and seeds. Records go to
``<out>/records.npz``, the report (``report.write_report``) to ``<out>/report/``, and the table
is printed.

``--artefacts DIR`` reads one of two layouts:

- what ``arvla demo`` writes (``DIR/collect/<task>-<key>/episodes``, ``DIR/train/<key>/stage2``):
  every finished task's episodes train the baseline, the newest finished stage-2 checkpoint is
  the AR expert, the tasks default to those collected, and the demo's own node parameters
  (``config/demo.yaml``) apply to every policy, so the AR rows reproduce the demo's setting;
- a flat one: ``DIR/episodes/`` (.npz), ``DIR/expert/`` (AR checkpoint), optional
  ``DIR/perception.yaml`` / ``DIR/sim.yaml`` / ``DIR/expert_node.yaml`` (node parameters).

Either way the baseline goes to ``DIR/chunk/`` (trained there if missing) and the output to
``DIR/eval/`` (``DIR/eval_baselines/`` for the demo layout). Explicit options override each part.

The benchmark table in the README: ``arvla demo && arvla eval --artefacts artifacts/demo/full``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import sys
import time
from typing import Any, Sequence

from arvla_base.config import ConfigError, from_dict, load_config, load_yaml, to_dict
from arvla_base.paths import config_file
from arvla_base.policy import StepPolicy

__all__ = ["EvalSetup", "cli_main", "fit_chunk_dims", "load_node_params", "make_policies",
           "run_evaluation"]

log = logging.getLogger(__name__)

POLICIES = ("ar", "chunk", "chunk_te")
QUICK = {"seeds": 2, "max_seconds": 6.0, "baseline_steps": 150}


@dataclasses.dataclass
class EvalSetup:
    episodes: list[pathlib.Path] | None  # training episodes of the baseline (.npz dirs)
    expert: pathlib.Path | None          # AR expert checkpoint
    chunk: pathlib.Path                  # baseline checkpoint (trained here if missing)
    chunk_config: pathlib.Path           # baseline train config
    out: pathlib.Path
    tasks: list[str]
    seeds: list[int]
    max_seconds: float
    policies: list[str]
    sim_params: dict[str, Any]
    perception_params: dict[str, Any]
    expert_params: dict[str, Any]
    baseline_steps: int | None = None    # override optim.max_steps of the baseline
    max_seconds_per_task: dict[str, float] = dataclasses.field(default_factory=dict)  # overrides
    keep_frames: bool = False
    progress: bool = True


def load_node_params(path: str | pathlib.Path | None) -> dict[str, Any]:
    """Node parameters from YAML: a ROS params file (``<node>: {ros__parameters: {...}}``) or a
    plain mapping. ``None`` or a missing optional file -> {}."""
    if path is None:
        return {}
    data = load_yaml(path)
    if len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict) and "ros__parameters" in only:
            data = only["ros__parameters"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: node parameters must be a mapping")
    return dict(data)


def fit_chunk_dims(cfg: Any, source: Any) -> Any:
    """The baseline config with state/action/prefix dims and token count taken from the data,
    so one config file serves any robot and backbone."""
    from arvla_baselines.chunk import ChunkConfig

    ep = source[0]
    changes: dict[str, Any] = {"state_dim": int(ep.states.shape[1]),
                               "action_dim": int(ep.actions.shape[1])}
    for i in range(len(source)):
        tokens = source[i].frame_tokens
        if tokens.shape[0]:
            changes["prefix_dim"] = int(tokens.shape[2])
            changes["max_prefix_tokens"] = max(int(tokens.shape[1]), cfg.model.max_prefix_tokens)
            break
    model = from_dict(ChunkConfig, {**to_dict(cfg.model), **changes}, prefix="model.")
    return dataclasses.replace(cfg, model=model)


def episode_source(dirs: Sequence[pathlib.Path]) -> Any:
    """One episode source over several .npz directories (e.g. one per task)."""
    from arvla_action_expert.data import InMemoryEpisodes, NpzEpisodeDir

    if len(dirs) == 1:
        return NpzEpisodeDir(dirs[0])
    return InMemoryEpisodes([ep for d in dirs for ep in NpzEpisodeDir(d)])


def demo_layout(art: pathlib.Path) -> dict[str, Any] | None:
    """What ``arvla demo`` left in ``art`` (None if it is not the demo's layout)."""
    collect = sorted(p for p in (art / "collect").glob("*-*") if (p / "DONE.json").is_file()
                     and (p / "episodes").is_dir()) if (art / "collect").is_dir() else []
    if not collect:
        return None
    trained = sorted((p for p in (art / "train").glob("*") if (p / "DONE.json").is_file()
                      and (p / "stage2" / "config.json").is_file()),
                     key=lambda p: p.stat().st_mtime) if (art / "train").is_dir() else []
    tasks = []
    for p in collect:
        task = p.name.rsplit("-", 1)[0]
        if task not in tasks:
            tasks.append(task)
    out: dict[str, Any] = {"episodes": [p / "episodes" for p in collect], "tasks": tasks,
                           "expert": trained[-1] / "stage2" if trained else None}
    try:  # the demo's own node parameters, so every policy runs in the demo's setting
        demo = load_yaml(config_file("demo.yaml"))["demo"]
        out["sim"] = dict(demo.get("sim") or {})
        out["perception"] = dict(demo.get("perception") or {})
        out["expert_node"] = dict(demo.get("expert") or {})
        ev = demo.get("eval") or {}
        out["seed0"], out["seeds"] = ev.get("seed0"), ev.get("episodes")
        out["max_seconds"] = ev.get("max_seconds")
        out["real_time_factor"] = ev.get("real_time_factor")
    except (OSError, KeyError, ConfigError):
        pass
    return out


def ensure_baseline(setup: EvalSetup) -> pathlib.Path:
    """The baseline checkpoint: the existing one, or train it on ``setup.episodes``."""
    from arvla_baselines.chunk import ChunkTrainConfig, train_chunk_policy
    from arvla_action_expert.train import OptimConfig

    if (setup.chunk / "config.json").is_file():
        return setup.chunk
    if setup.episodes is None:
        raise ConfigError(f"chunk baseline {setup.chunk} does not exist and no --episodes to "
                          "train it on")
    source = episode_source(setup.episodes)
    cfg = fit_chunk_dims(load_config(ChunkTrainConfig, setup.chunk_config), source)
    if setup.baseline_steps is not None:
        cfg.optim = from_dict(OptimConfig, {**to_dict(cfg.optim),
                                            "max_steps": setup.baseline_steps}, prefix="optim.")
    t0 = time.monotonic()
    path = train_chunk_policy(source, cfg, setup.chunk, progress=setup.progress)
    print(f"trained chunk baseline on {len(source)} episodes in {time.monotonic() - t0:.1f} s "
          f"-> {path}")
    return path


def make_policies(setup: EvalSetup) -> dict[str, Any]:
    """name -> policy object, for the policies asked for."""
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_baselines.chunk import ChunkPolicy

    policies: dict[str, Any] = {}
    chunk: ChunkPolicy | None = None
    for name in setup.policies:
        if name == "ar":
            if setup.expert is None:
                raise ConfigError("policy 'ar' needs --expert (the AR expert checkpoint)")
            policies[name] = ExpertPolicy.from_checkpoint(setup.expert)
        elif name in ("chunk", "chunk_te"):
            if chunk is None:
                chunk = ChunkPolicy.from_checkpoint(ensure_baseline(setup))
            mode = "chunk" if name == "chunk" else "temporal_ensemble"
            policies[name] = chunk.with_exec(dataclasses.replace(chunk.exec, mode=mode))
        else:
            raise ConfigError(f"--policies: unknown policy {name!r} (known: {list(POLICIES)})")
    return policies


def node_params_for(policy: StepPolicy, params: dict[str, Any]) -> dict[str, Any]:
    """The expert node parameters for ``policy``: ``ensemble_steps`` goes only to a policy that
    ensembles (``capabilities.ensembles``); the chunked baselines have their own execution modes,
    and the node would refuse ensemble_steps > 1 for them."""
    if policy.capabilities.ensembles:
        return dict(params)
    return {**params, "ensemble_steps": 1} if "ensemble_steps" in params else dict(params)


def run_evaluation(setup: EvalSetup) -> tuple[list[Any], pathlib.Path]:
    """Run every policy on every task and seed; save records and the report. Returns
    (records, report.md path)."""
    from arvla_eval.records import save_records
    from arvla_eval.report import rows_markdown, report_rows, write_report
    from arvla_eval.rollout import RolloutGraph, ar_expert_factory, default_domain_id, run_episodes

    policies = make_policies(setup)
    records: list[Any] = []
    timing: list[str] = []
    for name, policy in policies.items():
        t0 = time.monotonic()
        with RolloutGraph(task=setup.tasks[0],
                          expert_factory=ar_expert_factory(policy, node_params_for(policy, setup.expert_params)),
                          sim_overrides=setup.sim_params,
                          perception_overrides=setup.perception_params,
                          keep_frames=setup.keep_frames, domain_id=default_domain_id()) as graph:
            for task in setup.tasks:
                records += run_episodes(policy, task=task, seeds=setup.seeds,
                                        max_seconds=setup.max_seconds_per_task.get(task, setup.max_seconds),
                                        policy_name=name,
                                        keep_frames=setup.keep_frames, progress=setup.progress,
                                        graph=graph)
        timing.append(f"{name}: {time.monotonic() - t0:.0f} s wall")
    setup.out.mkdir(parents=True, exist_ok=True)
    save_records(setup.out / "records.npz", records)
    notes = (f"Expert checkpoint: {setup.expert}. Chunked baseline: {setup.chunk} (trained on "
             f"{setup.episodes}). Seeds {setup.seeds}, at most {setup.max_seconds:g} s sim time "
             f"per episode. Same node parameters for every policy: {setup.expert_params or '{}'}"
             f"{' (ensemble_steps: the AR expert only)' if 'ensemble_steps' in setup.expert_params else ''}."
             f" Wall time: {', '.join(timing)}.")
    md = write_report(records, setup.out / "report", title="AR expert vs chunked baselines",
                      notes=notes)
    print(rows_markdown(report_rows(records)))
    print(f"\nrecords: {setup.out / 'records.npz'}\nreport: {md} (+ report.html)")
    return records, md


# --------------------------------------------------------------------------------------------


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
            args.seeds = int(demo["seeds"])
        if not args.task:
            args.task = demo["tasks"]
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
    seeds_n = args.seeds if args.seeds is not None else (QUICK["seeds"] if quick else 10)
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
        seeds=list(range(args.seed0, args.seed0 + seeds_n)), max_seconds=max_seconds,
        policies=[p.strip() for p in args.policies.split(",") if p.strip()],
        sim_params=sim_params, perception_params=perception_params, expert_params=expert_params,
        baseline_steps=args.baseline_steps if args.baseline_steps is not None else (
            QUICK["baseline_steps"] if quick else None),
        keep_frames=args.frames, progress=not args.no_progress)


def cli_main(argv: list[str]) -> int:
    if argv and argv[0] == "train-baseline":
        from arvla_baselines.chunk import cli_main as train_main

        return train_main(argv[1:])
    if argv and argv[0] == "report":
        return _report_main(argv[1:])
    ap = argparse.ArgumentParser(
        prog="arvla eval", description=__doc__.split("\n\n")[0],
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
    ap.add_argument("--seeds", type=int, help="episodes per task and policy (default 10)")
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

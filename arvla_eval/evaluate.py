"""``arvla eval``: the AR expert against chunked baselines, closed loop, same seeds, one report.

    arvla eval --episodes DIR --expert CKPT --task pick_lift --seeds 10 --out runs/eval
    arvla eval --artefacts runs/demo --quick          # the demo's layout, CI-sized
    arvla eval --artefacts runs/demo --mode inprocess --seeds 100000:100050   # 50 seeds, fast
    arvla eval --artefacts runs/demo --mode lockstep --seeds 100000:100020    # ROS, deterministic
    arvla eval train-baseline --config config/chunk_tiny.yaml --data DIR --out runs/chunk
    arvla eval report runs/eval/records.npz --out runs/eval/report

Policies (``--policies``, default ``ar,chunk,chunk_te``):

- ``ar``: the AR expert checkpoint (``ExpertPolicy``);
- ``chunk``: the ACT-style chunked baseline (``chunk_policy.ChunkPolicy``) executing whole
  chunks open loop; ``chunk_te``: the same weights with temporal ensembling.

Modes (``--mode``; every table and report names the one it used):

- ``realtime`` (default): the ROS graph with the sim paced by the wall clock, as on a robot;
  results move with machine load (perception lag, late ticks);
- ``lockstep``: the same ROS graph, the sim advancing one control period only when the expert's
  tick for it was handled and a frame's prefix arriving exactly ``--lag-steps`` periods after
  capture (``arvla_sim`` parameter ``lockstep``): bit-identical under any load;
- ``inprocess``: no ROS; ``arvla_eval.inprocess`` runs the node's command path (``build_plan``,
  ``trajectory_timing``) into the sim's trajectory follower in one thread, deterministic and
  the fastest, for >= 50 seeds per cell.

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

import dataclasses
import logging
import pathlib
import time
from typing import Any, Sequence

from arvla_base.config import ConfigError, from_dict, load_config, load_yaml, to_dict
from arvla_base.policy import StepPolicy
from arvla_eval.demo_artefacts import demo_layout

__all__ = ["EvalSetup", "demo_layout", "fit_chunk_dims", "load_node_params", "make_policies",
           "run_evaluation"]

log = logging.getLogger(__name__)

POLICIES = ("ar", "chunk", "chunk_te")
# How the episodes run (every table names its mode):
MODES = {
    "inprocess": "in process, deterministic (no ROS; the node's command path emulated, "
                 "perception lag {lag} steps)",
    "realtime": "ROS graph, real time (sim paced by the wall clock: load-sensitive)",
    "lockstep": "ROS graph, lock-step, deterministic (the sim waits for each expert tick; "
                "perception lag {lag} steps)",
}
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
    mode: str = "realtime"               # one of MODES
    lag_steps: int = 2                   # inprocess / lockstep: perception delay, control steps
    workers: int = 1                     # inprocess: processes the episodes are spread over

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} must be one of {list(MODES)}")


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
    from arvla_baselines.chunk import POLICY_MODES, ChunkPolicy

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
            policies[name] = chunk.with_exec(dataclasses.replace(chunk.exec,
                                                                 mode=POLICY_MODES[name]))
        else:
            raise ConfigError(f"--policies: unknown policy {name!r} (known: {list(POLICIES)})")
    return policies


def node_params_for(policy: StepPolicy, params: dict[str, Any]) -> dict[str, Any]:
    """The expert node parameters for ``policy``: ``ensemble_steps`` and ``ensemble_m`` go only
    to a policy that ensembles (``capabilities.ensembles``); the chunked baselines have their own
    execution modes, and the node would refuse the AR's ensembling for them."""
    if policy.capabilities.ensembles:
        return dict(params)
    defaults = {"ensemble_steps": 1, "ensemble_m": 0.0}
    return {**params, **{k: v for k, v in defaults.items() if k in params}}


def seed_text(seeds: Sequence[int]) -> str:
    """'100000..100049 (50)' for a contiguous range, else the list."""
    if seeds and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    return str(list(seeds))


def graph_sim_params(mode: str, sim_params: dict[str, Any], lag_steps: int) -> dict[str, Any]:
    """The sim node's parameters for a ROS-graph mode: lock-step adds the handshake (as fast as
    the ticks and prefixes come, perception ``lag_steps`` periods late)."""
    if mode not in ("realtime", "lockstep"):
        raise ConfigError(f"mode: {mode!r} is not a ROS-graph mode (realtime, lockstep)")
    if mode == "realtime":
        return dict(sim_params)
    return {**sim_params, "lockstep": True, "real_time_factor": 0.0,
            "lockstep_perception_steps": lag_steps}


def _run_graph(setup: EvalSetup, policies: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """Every policy through the ROS graph (real time or lock-step), one graph per policy."""
    from arvla_eval.rollout import RolloutGraph, ar_expert_factory, default_domain_id, run_episodes

    records: list[Any] = []
    timing: list[str] = []
    sim_params = graph_sim_params(setup.mode, setup.sim_params, setup.lag_steps)
    for name, policy in policies.items():
        t0 = time.monotonic()
        with RolloutGraph(task=setup.tasks[0],
                          expert_factory=ar_expert_factory(policy, node_params_for(policy, setup.expert_params)),
                          sim_overrides=sim_params,
                          perception_overrides=setup.perception_params,
                          keep_frames=setup.keep_frames, domain_id=default_domain_id()) as graph:
            for task in setup.tasks:
                records += run_episodes(policy, task=task, seeds=setup.seeds,
                                        max_seconds=setup.max_seconds_per_task.get(task, setup.max_seconds),
                                        policy_name=name,
                                        keep_frames=setup.keep_frames, progress=setup.progress,
                                        graph=graph)
        timing.append(f"{name}: {time.monotonic() - t0:.0f} s wall")
    return records, timing


def _run_inprocess(setup: EvalSetup, policies: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """Every policy in process, one after the other; each policy's records are saved as soon as
    they are complete (``<out>/records_<policy>.npz``), so a later failure loses none of them."""
    from arvla_eval.inprocess import InProcessSetup, run_inprocess
    from arvla_eval.records import save_records

    inproc = InProcessSetup(
        tasks=setup.tasks, seeds=setup.seeds, max_seconds_per_task={
            t: setup.max_seconds_per_task.get(t, setup.max_seconds) for t in setup.tasks},
        sim_params=setup.sim_params, perception_params=setup.perception_params,
        expert_params=setup.expert_params, lag_steps=setup.lag_steps, progress=setup.progress)
    records: list[Any] = []
    timing: list[str] = []
    setup.out.mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        t0 = time.monotonic()
        params = node_params_for(policy, setup.expert_params)  # what the node would get
        recs = run_inprocess({name: policy}, dataclasses.replace(inproc, expert_params=params),
                             workers=setup.workers)
        save_records(setup.out / f"records_{name}.npz", recs)
        records += recs
        timing.append(f"{name}: {time.monotonic() - t0:.0f} s wall")
    return records, timing


def run_evaluation(setup: EvalSetup) -> tuple[list[Any], pathlib.Path]:
    """Run every policy on every task and seed; save records and the report. Returns
    (records, report.md path)."""
    from arvla_eval.records import save_records
    from arvla_eval.report import rows_markdown, report_rows, write_report

    policies = make_policies(setup)
    mode = MODES[setup.mode].format(lag=setup.lag_steps)
    print(f"arvla eval: {mode}; {len(setup.tasks)} tasks x {len(setup.seeds)} seeds "
          f"{seed_text(setup.seeds)} x {len(policies)} policies", flush=True)
    run = _run_inprocess if setup.mode == "inprocess" else _run_graph
    records, timing = run(setup, policies)
    setup.out.mkdir(parents=True, exist_ok=True)
    save_records(setup.out / "records.npz", records)
    notes = (f"Mode: {mode}. Expert checkpoint: {setup.expert}. Chunked baseline: {setup.chunk} "
             f"(trained on {setup.episodes}). Seeds {seed_text(setup.seeds)}, at most "
             f"{setup.max_seconds:g} s sim time per episode"
             f"{f' ({setup.max_seconds_per_task})' if setup.max_seconds_per_task else ''}. "
             f"Same node parameters for every policy: {setup.expert_params or '{}'}"
             f"{' (ensemble_steps: the AR expert only)' if 'ensemble_steps' in setup.expert_params else ''}."
             f" Wall time: {', '.join(timing)}.")
    md = write_report(records, setup.out / "report",
                      title=f"AR expert vs chunked baselines ({setup.mode})", notes=notes)
    print(f"mode: {mode}")
    print(rows_markdown(report_rows(records)))
    print(f"\nrecords: {setup.out / 'records.npz'}\nreport: {md} (+ report.html)")
    return records, md

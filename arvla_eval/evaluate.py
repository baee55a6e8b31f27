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

import dataclasses
import logging
import pathlib
import time
from typing import Any, Sequence

from arvla_base.config import ConfigError, from_dict, load_config, load_yaml, to_dict
from arvla_base.paths import config_file
from arvla_base.policy import StepPolicy

__all__ = ["EvalSetup", "fit_chunk_dims", "load_node_params", "make_policies",
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











"""The fast path of ``arvla eval``: closed-loop episodes in one thread, without ROS, deterministic.

``run_inprocess`` runs every policy on every task and seed with the embedded robot (``SimEnv``),
the perception backbone and the expert node's command path emulated (``streaming.rollout``: the
node's ``build_plan`` with its ``trajectory_timing`` into the sim's joint_trajectory_controller
follower at 100 Hz). What differs from the ROS graph, on purpose:

- time is the sim's alone: a camera frame captured at step c is in the policy's prefix slot
  from step c + ``lag_steps`` on (the ROS graph's perception lag at real time is 2-3 steps),
  and the step's wall time is not added as latency (``seamless`` timing makes the motion
  independent of it: test/eval/test_streaming.py). So the same checkpoint on the same seed
  gives the same episode on any machine, under any load;
- no DDS, no executor threads: ~1 s per episode per core, 4-10x faster than the graph.

Records are ``EpisodeRecord`` like the graph's (``joint_times``/``joint_positions``: every
follower sample, as the sim node's /joint_states), so the same report and metrics apply. The
ROS graph (``arvla eval --timing realtime | lockstep``) stays the confirmation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np

from arvla_base.config import ConfigError, from_dict
from arvla_base.paths import config_file
from arvla_base.policy import StepPolicy, configure_ensembling
from arvla_eval.records import EpisodeRecord

__all__ = ["EpisodeRunner", "InProcessSetup", "episode_record", "perception_config", "run_inprocess", "sim_limits"]

log = logging.getLogger(__name__)

TIMINGS = ("seamless", "tick", "arrival", "hold")   # hold: each target held one period (no JTC)


@dataclasses.dataclass
class InProcessSetup:
    """What the in-process episodes share: the node parameters of the ROS evaluation, read the
    same way (sim / perception / expert parameter mappings)."""

    tasks: list[str]
    seeds: list[int]
    max_seconds_per_task: dict[str, float]
    sim_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    perception_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    expert_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    lag_steps: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.lag_steps < 0:
            raise ConfigError(f"lag_steps: {self.lag_steps} must be >= 0")
        timing = self.expert_params.get("trajectory_timing", "seamless")
        if timing not in TIMINGS:
            raise ConfigError(f"trajectory_timing: {timing!r} must be one of {list(TIMINGS)}")


def perception_config(params: Mapping[str, Any]) -> Any:
    """The perception node's configuration for ``params`` over config/perception.yaml."""
    from arvla_base.params import PERCEPTION_NODE, read_node_params
    from arvla_perception.config import PerceptionConfig

    base = read_node_params(config_file("perception.yaml"), PERCEPTION_NODE)
    fields = {f.name for f in dataclasses.fields(PerceptionConfig)}
    merged = {k: v for k, v in {**base, **params}.items() if k in fields}
    return from_dict(PerceptionConfig, merged, prefix="perception.")


def sim_limits(joint_names: Sequence[str], lower: np.ndarray, upper: np.ndarray) -> Any:
    """The joint limits the expert node uses on the embedded robot (``rollout.expert_parameters``)."""
    from arvla_action_expert.node_config import ExpertNodeConfig
    from arvla_eval.rollout import expert_parameters

    params = expert_parameters(joint_names, lower, upper)
    cfg = ExpertNodeConfig(joints=list(joint_names), position_min=params["position_min"],
                           position_max=params["position_max"], max_velocity=params["max_velocity"])
    return cfg.joint_limits(list(joint_names))


def episode_record(out: Mapping[str, Any], *, policy: str, task: str, control_rate_hz: float,
                   joint_names: Sequence[str]) -> EpisodeRecord:
    """``streaming.rollout``'s output as the graph's ``EpisodeRecord``."""
    dt = 1.0 / control_rate_hz
    success = bool(out["success"]) and not bool(out["failure"])
    return EpisodeRecord(
        policy=policy, task=task, seed=int(out["seed"]), success=success,
        time_to_success=out["steps"] * dt if success else None, control_rate_hz=control_rate_hz,
        joint_names=list(joint_names), times=out["tick_ns"] * 1e-9, positions=out["tick_positions"],
        commands=out["commands"], staleness_steps=out["staleness"], step_latency_s=out["latency_s"],
        joint_times=out["joint_ns"] * 1e-9, joint_positions=out["joint_positions"],
        command_times=out["command_ns"] * 1e-9)


def _configure(policy: StepPolicy, expert_params: Mapping[str, Any]) -> None:
    """What the expert node does with its ``ensemble_steps`` / ``ensemble_m`` parameters
    (``configure_ensembling``, the node's own call; give each policy its parameters through
    ``evaluate.node_params_for``, as the graph does)."""
    configure_ensembling(policy, int(expert_params.get("ensemble_steps", 1)),
                         float(expert_params.get("ensemble_m", 0.0)))


class EpisodeRunner:
    """Runs single episodes: the backbone loaded once, one SimEnv per task kept open."""

    def __init__(self, policies: Mapping[str, StepPolicy], setup: InProcessSetup) -> None:
        from arvla_perception.backbone import load_backbone

        self.policies, self.setup = dict(policies), setup
        # One torch thread per runner, perception included (its num_threads sets torch's
        # process-wide count): the same arithmetic for any number of workers, and N workers x 2
        # threads on N cores ran 6-8x slower, spinning. Parallelism comes from --workers.
        self.pcfg = perception_config({**setup.perception_params, "num_threads": 1})
        self.backbone = load_backbone(self.pcfg)
        for name, policy in self.policies.items():
            if policy.model_id and self.backbone.model_id != policy.model_id:
                raise ConfigError(f"policy {name!r} was trained on prefixes of model_id "
                                  f"{policy.model_id!r}, the perception settings make "
                                  f"{self.backbone.model_id!r}: give the checkpoint's perception "
                                  "parameters")
            _configure(policy, setup.expert_params)
        params = setup.expert_params
        self.rate = float(params.get("control_rate", 20.0))
        camera_hz = float(setup.sim_params.get("camera_rate_hz", 10.0))
        self.frame_every = max(1, int(round(self.rate / camera_hz))) if camera_hz > 0 else 1
        self.timing = str(params.get("trajectory_timing", "seamless"))
        self.lookahead = int(params.get("lookahead_steps", 3))
        self.envs: dict[str, tuple[Any, Any]] = {}   # task -> (SimEnv, its joint limits)

    def env(self, task: str) -> tuple[Any, Any]:
        from arvla_sim.env import SimEnv

        if task not in self.envs:
            sim = self.setup.sim_params
            env = SimEnv(task=task, control_rate_hz=self.rate,
                         image_height=int(sim.get("image_height", self.pcfg.image_size)),
                         image_width=int(sim.get("image_width", self.pcfg.image_size)),
                         home_noise=float(sim.get("home_noise", 0.02)),
                         max_duration_s=float(self.setup.max_seconds_per_task.get(task, 0.0)))
            self.envs[task] = env, sim_limits(env.joint_names, env.world.lower, env.world.upper)
        return self.envs[task]

    def episode(self, job: tuple[str, str, int], before_step: Any = None) -> EpisodeRecord:
        """Policy ``name``'s episode of ``task`` from ``seed`` (``job``); ``before_step``: as for
        ``streaming.rollout`` (probes that read the sim's ground truth every step)."""
        from arvla_eval.streaming import rollout

        name, task, seed = job
        env, limits = self.env(task)
        out = rollout(self.policies[name], env, self.backbone, seed,
                      timing=None if self.timing == "hold" else self.timing, limits=limits,
                      lookahead=self.lookahead, lag=self.setup.lag_steps, frame_every=self.frame_every,
                      before_step=before_step)
        return episode_record(out, policy=name, task=task, control_rate_hz=self.rate,
                              joint_names=env.joint_names)

    def close(self) -> None:
        for env, _ in self.envs.values():
            env.close()
        self.envs.clear()


_WORKER: EpisodeRunner | None = None


def _init_worker(policies: bytes, setup: InProcessSetup) -> None:
    import pickle

    global _WORKER
    _WORKER = EpisodeRunner(pickle.loads(policies), setup)


def _worker_episode(job: tuple[str, str, int]) -> EpisodeRecord:
    assert _WORKER is not None
    return _WORKER.episode(job)


def run_inprocess(policies: Mapping[str, StepPolicy], setup: InProcessSetup, *,
                  workers: int = 1) -> list[EpisodeRecord]:
    """Every policy on every task and seed (same seeds for all), without ROS; the records in
    (policy, task, seed) order. ``workers`` > 1: episodes spread over that many processes
    (each loads the backbone once); every episode is computed alone, so the records are the
    same for any ``workers``."""
    from tqdm import tqdm

    if workers < 1:
        raise ConfigError(f"workers: {workers} must be >= 1")
    jobs = [(name, task, seed) for name in policies for task in setup.tasks for seed in setup.seeds]
    bar = tqdm(total=len(jobs), desc="in process", unit="ep", disable=not setup.progress)
    records: list[EpisodeRecord] = []
    t0 = time.monotonic()
    if workers == 1:
        runner = EpisodeRunner(policies, setup)
        try:
            for job in jobs:
                records.append(runner.episode(job))
                bar.update()
        finally:
            runner.close()
    else:
        import multiprocessing as mp

        import pickle

        # Plain pickle bytes, not the policy objects: multiprocessing would hand torch tensors
        # over in shared memory, and every worker would then write the SAME KV cache.
        private = pickle.dumps(dict(policies))
        with mp.get_context("spawn").Pool(workers, _init_worker, (private, setup)) as pool:
            for rec in pool.imap(_worker_episode, jobs):
                records.append(rec)
                bar.update()
    bar.close()
    for name in policies:
        recs = [r for r in records if r.policy == name]
        log.info("in process: %s, %d/%d successes over %d tasks x %d seeds (%d workers, %.0f s "
                 "so far)", name, sum(r.success for r in recs), len(recs), len(setup.tasks),
                 len(setup.seeds), workers, time.monotonic() - t0)
    return records

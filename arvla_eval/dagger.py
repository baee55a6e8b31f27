"""DAgger: demonstrations on the learned expert's own states, labelled by the scripted demonstrator.

A policy trained on demonstrations only ever saw the states the demonstrator (plus DART noise)
visits; in closed loop its own small errors take it elsewhere, and nothing taught it the way back.
Here the policy drives the embedded robot, in process and deterministic (the perception delay
emulated as in ``arvla_eval.inprocess``: a frame captured at step c is in the prefix slot from
step c + ``lag_steps``), while the task's scripted demonstrator runs beside it on the same
observations and labels every step with what it would command there. The episode keeps the
states the robot went through, the demonstrator's labels as ``actions``, and the prefixes the
policy saw as ``frame_tokens``: aggregated with the demonstrations, it trains the next policy.

What the robot executes is the policy's command, kept within ``max_deviation`` of the label
(per arm joint in rad, the gripper in m). The demonstrator plans from the scene and from its own
commanded pose, not from where the arm is: an arm far off that plan would be labelled with a
jump back to it, which no robot should learn. Within the bound the arm goes where the policy
takes it -- its own errors, not white noise (DART's 0.02 rad) -- and the labels say how the plan
continues from there. ``max_deviation`` 0 gives the demonstrations again (labels executed);
a large one executes the policy alone.

The bound is needed because the scripted demonstrators are not feedback policies: they follow a
plan in time, and a label says where the plan is now. A policy that runs late or early (its
own states) cannot see the plan's clock, so such labels are not a function of what it
observes: trained on them, the expert fits them to a loss twice the demonstrations' and gets
worse (README "Closing the loop"). ``resync_m`` > 0 makes the demonstrator re-plan from the
measured hand whenever the hand is that far off where following the plan would put it
(``WaypointExpert.resync_m``): labels that say how to go on from where the arm is.

ROS-free; the same seeds give the same episodes for any number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import pickle
import time
from typing import Any

import numpy as np

from arvla_base.config import ConfigError, require
from arvla_eval.collect_inprocess import already_run, episode_file, unsuccessful_marker
from arvla_eval.collect_ros import CollectConfig

__all__ = ["DaggerConfig", "DaggerResult", "DaggerRollout", "collect_dagger"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DaggerConfig:
    """How the policy's own episodes are run and labelled."""

    collect: CollectConfig                 # task, seeds, demonstrator (motion profile, retries), sim, perception
    max_deviation: float = 0.05            # rad: an arm joint executes at most this far from the label
    max_deviation_gripper: float = 0.005   # m: the same for the finger opening
    lag_steps: int = 2                     # perception delay in control steps (the in-process eval's)
    expert_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # the node's (ensemble_steps)
    keep_unsuccessful: bool = True         # episodes the task was not solved in still teach corrections
    resync_m: float = 0.0                  # > 0: the demonstrator re-plans from the measured hand when
    #                                        it is further than this off its plan (WaypointExpert.resync_m)

    def __post_init__(self) -> None:
        require(self.max_deviation >= 0, "max_deviation", self.max_deviation, "must be >= 0 rad")
        require(self.max_deviation_gripper >= 0, "max_deviation_gripper",
                self.max_deviation_gripper, "must be >= 0 m")
        require(self.lag_steps >= 0, "lag_steps", self.lag_steps, "must be >= 0")
        require(self.resync_m >= 0, "resync_m", self.resync_m, "must be >= 0 m")
        if self.collect.prefixes != "offline":
            raise ConfigError("dagger: collect.prefixes must be 'offline' (frames are encoded in "
                              f"process), got {self.collect.prefixes!r}")


@dataclasses.dataclass
class DaggerEpisode:
    episode: dict[str, Any] | None   # the training episode (None: not kept)
    seed: int
    success: bool
    steps: int
    clipped: float        # share of the policy's steps whose command was pulled back to the bound
    deviation: float      # mean over the policy's steps of max |policy - label| over arm joints, rad
    resyncs: int = 0      # steps the demonstrator re-planned from the measured hand (resync_m)


@dataclasses.dataclass
class DaggerResult:
    episodes: list[pathlib.Path]
    runs: list[DaggerEpisode]

    def summary(self) -> str:
        if not self.runs:
            return "no episode run"
        n = len(self.runs)
        return (f"{sum(r.success for r in self.runs)}/{n} solved under the policy, "
                f"{len(self.episodes)} episodes kept, {sum(r.steps for r in self.runs)} steps; "
                f"policy-label deviation {np.mean([r.deviation for r in self.runs]):.4f} rad "
                f"(mean of per-step max), {100 * np.mean([r.clipped for r in self.runs]):.0f} % "
                f"of steps clipped, {sum(r.resyncs for r in self.runs)} re-plans from the measured hand")


class DaggerRollout:
    """Runs policy-driven, demonstrator-labelled episodes of one task (SimEnv, demonstrator and
    backbone built once)."""

    def __init__(self, policy: Any, config: DaggerConfig) -> None:
        from arvla_eval.collect_inprocess import DemonstrationSim
        from arvla_eval.inprocess import _configure, perception_config
        from arvla_perception.backbone import load_backbone

        c = config.collect
        self.config, self.policy = config, policy
        _configure(policy, config.expert_params)
        sim = DemonstrationSim.build(c)
        self.env, self.controller, self.demonstrator = sim.env, sim.controller, sim.expert
        self.rate, self.frame_every = sim.rate, sim.frame_every
        self.demonstrator.resync_m = float(config.resync_m)
        # one torch thread per process: parallelism comes from workers
        self.backbone = load_backbone(perception_config({**c.perception, "num_threads": 1}))
        if policy.model_id and policy.model_id != self.backbone.model_id:
            raise ConfigError(f"the policy was trained on prefixes of model_id {policy.model_id!r}, "
                              f"the perception settings make {self.backbone.model_id!r}")
        n = len(self.env.joint_names)
        self.bound = np.full(n, float(config.max_deviation))
        self.bound[n - 1] = float(config.max_deviation_gripper)   # the last joint: the fingers

    def run(self, seed: int) -> DaggerEpisode:
        """One episode of ``seed``: the policy acts from its first prefix on (the demonstrator's
        command is executed before), ``settle_s`` of holding is recorded after success."""
        from arvla_base.episode import episode_metadata, validate_episode

        cfg, env, policy = self.config, self.env, self.policy
        settle_steps = int(round(cfg.collect.settle_s * self.rate))
        obs = env.reset(seed)
        policy.reset()
        self.controller.reset()
        states, labels, executed, tokens, frame_steps = [], [], [], [], []
        pending: list[tuple[int, int, np.ndarray]] = []   # (installed at step, capture step, tokens)
        started, after = False, 0
        deviations: list[float] = []
        clipped = 0
        while env.step_index < env.max_steps:
            t = env.step_index
            if t % self.frame_every == 0:
                tok = self.backbone.encode(env.render(), env.task.instruction)
                tokens.append(tok)
                frame_steps.append(t)
                pending.append((t + cfg.lag_steps, t, tok))
            while pending and pending[0][0] <= t:
                _, capture, tok = pending.pop(0)
                policy.refresh_prefix(tok, capture)
                started = True
            label = np.asarray(self.demonstrator.act(obs), np.float64)
            state = np.asarray(obs["state"], np.float64)
            command = label
            if started:
                own = np.asarray(policy.step(state, t)[0], np.float64)
                off = own - label
                deviations.append(float(np.max(np.abs(off[:-1]))))
                clipped += bool(np.any(np.abs(off) > self.bound))
                command = label + np.clip(off, -self.bound, self.bound)
            states.append(obs["state"])
            labels.append(label)
            executed.append(command)
            obs = self.controller(command)
            if env.failure():
                break
            if env.success():
                after += 1
                if after > settle_steps:
                    break
        success = bool(env.success())
        run = DaggerEpisode(None, seed, success, len(states), clipped / max(len(deviations), 1),
                            float(np.mean(deviations)) if deviations else 0.0,
                            self.demonstrator.resyncs)
        if not success and not cfg.keep_unsuccessful:
            return run
        episode: dict[str, Any] = {
            "states": np.asarray(states, np.float32), "actions": np.asarray(labels, np.float32),
            "executed": np.asarray(executed, np.float64),
            "frame_tokens": np.stack(tokens).astype(np.float32),
            "frame_steps": np.asarray(frame_steps, np.int64)}
        episode.update(episode_metadata(self.rate, self.backbone.model_id, env.joint_names, env.task.name))
        episode["source"] = np.asarray(
            f"dagger: {cfg.collect.task} seed {seed}, policy-driven within {cfg.max_deviation:g} rad "
            f"/ {cfg.max_deviation_gripper:g} m of the {cfg.collect.motion_profile} demonstrator's labels"
            f"{f' (re-planned from the measured hand beyond {cfg.resync_m:g} m)' if cfg.resync_m else ''}, "
            f"{'solved' if success else 'not solved'}")
        validate_episode(episode, where=f"dagger {cfg.collect.task} seed {seed}")
        run.episode = episode
        return run

    def close(self) -> None:
        self.env.close()


_WORKER: DaggerRollout | None = None


def _init_worker(policy: bytes, config: DaggerConfig) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(1)
    _WORKER = DaggerRollout(pickle.loads(policy), config)


def _worker_run(seed: int) -> DaggerEpisode:
    assert _WORKER is not None
    return _WORKER.run(seed)


def collect_dagger(policy: Any, config: DaggerConfig, out_dir: str | pathlib.Path, *,
                   progress: bool = True, workers: int = 1, resume: bool = False) -> DaggerResult:
    """Run ``config.collect.seeds`` policy-driven episodes of its task into
    ``out_dir/episodes/<task>_<seed>.npz`` (training episodes, as the demonstrations). ``resume``:
    seeds with an episode file (or an ``.unsuccessful`` marker) there are not run again."""
    from tqdm import tqdm

    from arvla_base.episode import save_episode

    if workers < 1:
        raise ConfigError(f"workers: {workers} must be >= 1")
    task = config.collect.task
    ep_dir = pathlib.Path(out_dir) / "episodes"
    ep_dir.mkdir(parents=True, exist_ok=True)
    seeds = [s for s in config.collect.seeds if not (resume and already_run(ep_dir, task, s))]
    result = DaggerResult([], [])
    bar = tqdm(total=len(seeds), desc=f"dagger {task}", unit="ep", disable=not progress)
    t0 = time.monotonic()

    def keep(run: DaggerEpisode) -> None:
        result.runs.append(run)
        if run.episode is not None:
            result.episodes.append(save_episode(episode_file(ep_dir, task, run.seed), run.episode))
            run.episode = None   # written: do not hold every episode in memory
        else:
            unsuccessful_marker(ep_dir, task, run.seed).write_text("not solved under the policy\n")
        bar.update()
        bar.set_postfix(solved=f"{sum(r.success for r in result.runs)}/{len(result.runs)}")

    if workers == 1:
        rollout = DaggerRollout(policy, config)
        try:
            for seed in seeds:
                keep(rollout.run(seed))
        finally:
            rollout.close()
    else:
        import multiprocessing as mp

        # plain pickle bytes: every worker its own policy (and KV cache), as run_inprocess
        private = pickle.dumps(policy)
        with mp.get_context("spawn").Pool(workers, _init_worker, (private, config)) as pool:
            for run in pool.imap(_worker_run, seeds):
                keep(run)
    bar.close()
    log.info("dagger %s: %s, %.0f s (%d workers)", task, result.summary(), time.monotonic() - t0,
             workers)
    return result

"""Demonstrations without ROS: the scripted expert on the embedded robot, in process.

The same demonstrations as ``collect_ros`` -- the task's scripted IK expert acting once per
control tick on the measured joint positions and the privileged scene state, its command sent as
one point a period ahead to the sim's joint_trajectory_controller follower (100 Hz), DART noise
on what the robot executes while the episode keeps the clean label, ``settle_s`` of holding
after success, camera frames at ``camera_rate_hz`` encoded afterwards by the perception backbone
(``prefixes: offline``) -- but on sim time alone: no DDS, no executor, no wall clock.

What that buys (``arvla collect --inprocess``, ``bench/ablations.py`` rows ``demos*``):

- speed: a demonstration costs its physics, its renders and its encodings, ~10x less than a
  ROS graph, and ``workers`` spread seeds over processes;
- exactness: every tick's state is the state at the tick and every command lands at the tick
  (through ROS on 2 busy cores the demonstrator's timing jitters by a few ms), so the episodes
  are identical for any machine load and any number of workers.

Episodes are the CONTRACTS.md ``.npz`` files ``collect_ros`` writes (``episodes/<task>_<seed>.npz``),
so training reads either.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any

import numpy as np

from arvla_base.config import ConfigError
from arvla_eval.collect_ros import CollectConfig, CollectResult
from arvla_eval.records import EpisodeRecord
from arvla_eval.streaming import FOLLOWER_HZ

__all__ = ["DemonstrationSim", "Demonstrator", "already_run", "collect_inprocess", "episode_file",
           "episode_name", "unsuccessful_marker"]

log = logging.getLogger(__name__)

@dataclasses.dataclass
class DemonstrationSim:
    """What a demonstrator of ``CollectConfig`` runs on: the SimEnv, the JTC follower that
    executes its commands, the task's scripted expert, the control rate and the camera period."""

    env: Any
    controller: Any
    expert: Any
    rate: float
    frame_every: int

    @classmethod
    def build(cls, config: CollectConfig) -> "DemonstrationSim":
        from arvla_sim.collect import ThroughController
        from arvla_sim.env import SimEnv
        from arvla_sim.experts import make_expert
        from arvla_sim.tasks import make_task

        sim = config.sim
        rate = float(config.control_rate_hz)
        camera_hz = float(sim.get("camera_rate_hz", 10.0))
        if camera_hz <= 0:
            raise ConfigError(f"sim.camera_rate_hz: {camera_hz} must be > 0 (frames are the prefixes)")
        task = make_task(config.task)
        env = SimEnv(task=config.task, control_rate_hz=rate,
                     image_height=int(sim.get("image_height", 128)),
                     image_width=int(sim.get("image_width", 128)),
                     home_noise=float(sim.get("home_noise", 0.02)),
                     max_duration_s=float(config.max_seconds or task.max_duration_s))
        return cls(env, ThroughController(env, FOLLOWER_HZ),
                   make_expert(env, config.motion_profile, config.grasp_retries, config.speed_jitter), rate,
                   max(1, int(round(rate / camera_hz))))


def episode_name(task: str, seed: int) -> str:
    """``<task>_<seed>``: the file name (``.npz``) of a collected episode."""
    return f"{task}_{seed:06d}"


def episode_file(ep_dir: pathlib.Path, task: str, seed: int) -> pathlib.Path:
    """Where ``seed`` of ``task`` is written when it is kept."""
    return ep_dir / f"{episode_name(task, seed)}.npz"


def unsuccessful_marker(ep_dir: pathlib.Path, task: str, seed: int) -> pathlib.Path:
    """What ``seed`` of ``task`` leaves when it is not kept, so that a resumed run skips it."""
    return ep_dir / f".{episode_name(task, seed)}.unsuccessful"


def already_run(ep_dir: pathlib.Path, task: str, seed: int) -> bool:
    """Whether ``seed`` of ``task`` left an episode, or its unsuccessful marker, in ``ep_dir``
    (a resumed collection does not run it again)."""
    return (episode_file(ep_dir, task, seed).is_file()
            or unsuccessful_marker(ep_dir, task, seed).is_file())


@dataclasses.dataclass
class Demonstration:
    episode: dict[str, np.ndarray] | None   # the training episode (None: not kept)
    record: EpisodeRecord                   # the demonstrator's episode as an evaluation record


class Demonstrator:
    """Runs scripted demonstrations of one task; the backbone and the SimEnv are built once."""

    def __init__(self, config: CollectConfig) -> None:
        from arvla_data.prefixes import OfflinePrefixes

        if config.prefixes != "offline":
            raise ValueError("in-process collection encodes frames offline: prefixes must be "
                             f"'offline', got {config.prefixes!r}")
        self.config = config
        sim = DemonstrationSim.build(config)
        self.env, self.controller, self.expert = sim.env, sim.controller, sim.expert
        self.rate, self.frame_every = sim.rate, sim.frame_every
        # one torch thread per process: parallelism comes from workers
        self.encoder = OfflinePrefixes({**config.perception, "num_threads": 1},
                                       self.env.task.instruction)

    def run(self, seed: int, noise_std: float) -> Demonstration:
        """One demonstration of ``seed`` with DART noise ``noise_std`` (rad, 0 = clean)."""
        from arvla_base.episode import episode_metadata, validate_episode
        from arvla_sim.collect import collect_episode

        cfg, env = self.config, self.env
        ep = collect_episode(env, seed, frame_every=self.frame_every, noise_std=noise_std,
                             settle_steps=int(round(cfg.settle_s * self.rate)),
                             execute=self.controller, expert=self.expert)
        success = bool(ep["success"])
        T = len(ep["states"])
        ticks = np.arange(T) / self.rate
        record = EpisodeRecord(
            policy="scripted", task=cfg.task, seed=seed, success=success,
            time_to_success=ep["success_step"] / self.rate if success else None, control_rate_hz=self.rate,
            joint_names=list(env.joint_names), times=ticks, positions=ep["states"],
            commands=ep["executed"], staleness_steps=np.full(T, -1), step_latency_s=np.zeros(T),
            joint_times=np.asarray(self.controller.joint_ns) * 1e-9,
            joint_positions=np.stack(self.controller.joint_positions), command_times=ticks + 1 / self.rate)
        if not success and cfg.only_success:
            return Demonstration(None, record)
        episode: dict[str, Any] = {k: ep[k] for k in ("states", "actions", "frame_steps", "images")}
        episode.update(episode_metadata(self.rate, "", env.joint_names, cfg.task))
        self.encoder.fill(episode)      # images -> frame_tokens, model_id
        episode["source"] = np.asarray(f"in process: {cfg.task} seed {seed}, DART {noise_std:g} rad")
        validate_episode(episode, where=f"{cfg.task} seed {seed}")
        return Demonstration(episode, record)

    def close(self) -> None:
        self.env.close()


_WORKER: Demonstrator | None = None


def _init_worker(config: CollectConfig) -> None:
    global _WORKER
    _WORKER = Demonstrator(config)


def _worker_run(job: tuple[int, float]) -> Demonstration:
    assert _WORKER is not None
    return _WORKER.run(*job)


def collect_inprocess(config: CollectConfig, out_dir: str | pathlib.Path, *, progress: bool = True,
                      workers: int = 1, resume: bool = False) -> CollectResult:
    """Collect ``config.seeds`` demonstrations of ``config.task`` into ``out_dir/episodes/``
    (``<task>_<seed>.npz``, as ``collect_ros``; no bags). ``workers`` > 1 spreads the seeds over
    processes; the episodes are the same for any number of workers. ``resume``: seeds already
    demonstrated in ``out_dir`` (an episode file, or a ``.<task>_<seed>.unsuccessful`` marker) are
    not run again (each seed keeps its DART noise, which depends on its index in ``seeds``);
    the result then lists only the seeds run now."""
    from tqdm import tqdm

    from arvla_base.episode import save_episode

    if workers < 1:
        raise ValueError(f"workers: {workers} must be >= 1")
    ep_dir = pathlib.Path(out_dir) / "episodes"
    ep_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, config.noise_for(i)) for i, seed in enumerate(config.seeds)
            if not (resume and already_run(ep_dir, config.task, seed))]
    result = CollectResult([], [], [])
    bar = tqdm(total=len(jobs), desc=f"collect {config.task} (in process)", unit="ep",
               disable=not progress)
    t0 = time.monotonic()

    def keep(seed: int, demo: Demonstration) -> None:
        result.records.append(demo.record)
        if demo.episode is not None:
            result.episodes.append(save_episode(episode_file(ep_dir, config.task, seed),
                                                demo.episode))
        else:  # so that a resumed collection does not run it again
            unsuccessful_marker(ep_dir, config.task, seed).write_text("scripted expert failed\n")
        bar.update()
        bar.set_postfix(success=f"{sum(r.success for r in result.records)}/{len(result.records)}")

    if workers == 1:
        demonstrator = Demonstrator(config)
        try:
            for seed, noise in jobs:
                keep(seed, demonstrator.run(seed, noise))
        finally:
            demonstrator.close()
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, _init_worker, (config,)) as pool:
            for (seed, _), demo in zip(jobs, pool.imap(_worker_run, jobs)):
                keep(seed, demo)
    bar.close()
    wins = sum(r.success for r in result.records)
    log.info("collect %s in process: %d/%d successful, %d episodes, %.0f s (%d workers)",
             config.task, wins, len(jobs), len(result.episodes), time.monotonic() - t0, workers)
    return result


"""Collect scripted-expert episodes straight from ``SimEnv`` as numpy arrays (no ROS, no bags).

One episode follows the episode format of docs/CONTRACTS.md, minus ``frame_tokens`` (those are
backbone outputs; the training pipeline computes them from ``images`` with the perception
model it trains with, so one set of demonstrations serves any backbone):

* ``states``  (T, 8) float32 -- joint positions in ``JOINT_NAMES`` order, observed BEFORE action t
* ``actions`` (T, 8) float32 -- absolute joint targets the expert commanded at step t
* ``executed`` (T, 8) float64 -- what the robot was sent (``actions`` + DART noise, if any)
* ``images``  (F, H, W, 3) uint8 and ``frame_steps`` (F,) int64 -- camera frames captured at
  those steps (every ``frame_every``-th step, before the action of that step)
* metadata: ``control_rate_hz``, ``model_id`` (""), ``joint_names``, ``task``, ``instruction``,
  ``seed``, ``success``, ``success_step``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterable

import numpy as np

from arvla_sim.env import SimEnv, SimEnvConfig
from arvla_sim.experts import DartNoise, make_expert


class ThroughController:
    """Executes commands as the sim node's joint_trajectory_controller follower does, one control
    period at a time: the follower interpolates towards its trajectory at ``rate_hz``, each of
    its samples commanded to the robot for that sub-period -- instead of ``SimEnv.step``'s target
    held for the whole period. Called with one command, it executes it as the ROS
    demonstrator's message does (one point one control period ahead, started on arrival);
    ``advance`` takes any trajectory and the time it arrives (the expert node's path,
    ``arvla_eval.streaming``). Keeps every follower sample (the sim node's /joint_states) in
    ``joint_ns`` / ``joint_positions`` (ns from the episode's first tick)."""

    def __init__(self, env: SimEnv, rate_hz: float = 100.0) -> None:
        from arvla_sim.robot import PHYSICS_DT

        self.env = env
        self.period_ns = int(round(env.dt * 1e9))
        self.sub_ns = int(round(1e9 / rate_hz))
        self.sub_steps = int(round((1.0 / rate_hz) / PHYSICS_DT))
        if self.period_ns % self.sub_ns or self.sub_steps < 1:
            raise ValueError(f"the follower rate {rate_hz} Hz must divide the control rate's "
                             f"period ({self.period_ns} ns)")
        self.follower: Any = None

    def reset(self, hold: np.ndarray | None = None, start_ns: int = 0) -> None:
        """Start of an episode (after ``env.reset``): the follower holds ``hold`` (default: the
        measured posture), the episode's first joint sample; the first tick is at sim time
        ``start_ns``."""
        from arvla_sim.jtc import JointTrajectoryFollower

        q = np.asarray(self.env.world.positions() if hold is None else hold, np.float64)
        self.follower = JointTrajectoryFollower(self.env.joint_names, q)
        self.start_ns = self.now_ns = int(start_ns)
        self.joint_ns: list[int] = [0]
        self.joint_positions: list[np.ndarray] = [q]

    def advance(self, points: list[Any] | None = None, stamp_ns: int = 0,
                arrive_ns: int | None = None) -> None:
        """One control period from ``now_ns``. ``points`` (``TrajPoint``s, stamped ``stamp_ns``;
        0 = start on arrival) reach the follower at its first tick at or after ``arrive_ns``
        (default: now), or at the next period's start when they arrive later than this one."""
        env, t0 = self.env, self.now_ns
        pending = points is not None
        arrive = t0 if arrive_ns is None else arrive_ns
        for k in range(self.period_ns // self.sub_ns):
            t_sub = t0 + k * self.sub_ns
            if pending and t_sub >= arrive:
                self.follower.set_trajectory(env.joint_names, points, stamp_ns=stamp_ns, now_ns=t_sub)
                pending = False
            q_cmd, _ = self.follower.sample(t_sub)
            env.command(q_cmd)
            env.step_physics(self.sub_steps)
            self.joint_ns.append(t_sub + self.sub_ns - self.start_ns)
            self.joint_positions.append(env.world.positions().astype(np.float64))
        self.now_ns = t0 + self.period_ns
        if pending:
            self.follower.set_trajectory(env.joint_names, points, stamp_ns=stamp_ns, now_ns=self.now_ns)
        env.step_index += 1

    def __call__(self, command: np.ndarray) -> dict[str, Any]:
        from arvla_sim.jtc import TrajPoint

        self.advance([TrajPoint(list(command), self.period_ns)], stamp_ns=0)
        return self.env.observe()


def collect_episode(env: SimEnv, seed: int, *, frame_every: int = 1, render: bool = True,
                    settle_steps: int = 5, expert: Any = None, noise_std: float = 0.0,
                    execute: ThroughController | None = None) -> dict[str, Any]:
    """Run the scripted expert for one seeded episode; ``settle_steps`` extra steps are recorded
    after success so a policy also sees "task done, hold still". ``noise_std`` > 0: DART
    demonstrations (``DartNoise``): the robot executes perturbed commands, ``actions`` keeps the
    expert's clean ones. ``execute``: how a command reaches the robot (default ``env.step``:
    held for the period; a ``ThroughController``: as through ROS); ``executed`` keeps them."""
    if frame_every < 1:
        raise ValueError(f"frame_every must be >= 1, got {frame_every}")
    expert = expert or make_expert(env)
    dart = DartNoise(noise_std, dt=env.dt)
    dart.reset(seed)
    obs = env.reset(seed)
    if execute is not None:
        execute.reset()
    step = execute or env.step
    executed = []
    states, actions, images, frame_steps = [], [], [], []
    after, success_step = 0, -1
    while env.step_index < env.max_steps:
        t = env.step_index
        if render and t % frame_every == 0:
            images.append(env.render())
            frame_steps.append(t)
        action = expert.act(obs)
        states.append(obs["state"])
        actions.append(action)
        executed.append(dart.perturb(action))
        obs = step(executed[-1])
        if env.failure():
            break
        if env.success():
            after += 1
            if after == 1:
                success_step = env.step_index
            if after > settle_steps:
                break
    h, w = env.config.image_height, env.config.image_width
    return {
        "states": np.asarray(states, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "executed": np.asarray(executed, dtype=np.float64),
        "images": np.asarray(images, dtype=np.uint8).reshape(-1, h, w, 3),
        "frame_steps": np.asarray(frame_steps, dtype=np.int64),
        "control_rate_hz": float(env.config.control_rate_hz),
        "model_id": "",
        "joint_names": list(env.joint_names),
        "task": env.task.name,
        "instruction": env.task.instruction,
        "seed": int(seed),
        "success": bool(env.success()),
        "success_step": int(success_step),   # steps until the task first succeeded (-1: never)
    }


def save_episode(episode: dict[str, Any], path: str | pathlib.Path) -> pathlib.Path:
    """Write one episode as a compressed ``.npz`` (strings/lists stored as numpy arrays, no pickle).

    Atomic: written to a hidden ``.<name>.tmp`` beside it (a dataset listing of ``*.npz`` never
    sees it), fsynced, then renamed over ``path``; a collector killed mid-write leaves the previous
    file intact and no partial episode under the final name.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in episode.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: numpy appends no ".npz" to the name
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_episode(path: str | pathlib.Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        ep: dict[str, Any] = {k: z[k] for k in z.files}
    for key in ("model_id", "task", "instruction"):
        ep[key] = str(ep[key])
    for key, cast in (("control_rate_hz", float), ("seed", int), ("success", bool)):
        ep[key] = cast(ep[key])
    ep["joint_names"] = [str(n) for n in ep["joint_names"]]
    return ep


def collect(config: SimEnvConfig, seeds: Iterable[int], *, out_dir: str | pathlib.Path | None = None,
            frame_every: int = 1, render: bool = True, only_success: bool = False,
            progress: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Episodes for ``seeds`` (kept in memory, and saved as ``<task>_<seed>.npz`` under
    ``out_dir`` if given). Returns (episodes kept, expert success rate over all seeds)."""
    from tqdm import tqdm

    env = SimEnv(config)
    seeds = list(seeds)
    kept, wins = [], 0
    try:
        bar = tqdm(seeds, desc=f"collect {config.task}", disable=not progress)
        for i, seed in enumerate(bar):
            ep = collect_episode(env, seed, frame_every=frame_every, render=render)
            wins += ep["success"]
            bar.set_postfix(success=f"{wins}/{i + 1}")
            if only_success and not ep["success"]:
                continue
            if out_dir is not None:
                save_episode(ep, pathlib.Path(out_dir) / f"{config.task}_{seed:06d}.npz")
            kept.append(ep)
    finally:
        env.close()
    return kept, wins / max(len(seeds), 1)

"""The ROS command path emulated without ROS: the expert node's trajectory building and timing
(``trajectory_timing``) feeding the sim's joint_trajectory_controller follower, with a step latency.

ROS-free and deterministic (sim time only), so the effect of the streaming on the executed motion
can be measured on many seeds (``bench/streaming.py``) and tested: with 'seamless' timing the
motion must not depend on when inside the tick the step finishes.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from arvla_action_expert.joints import JointLimits
from arvla_action_expert.trajectory import TrajectoryPlan, build_plan, hold_plan, seamless_start
from arvla_eval import metrics
from arvla_sim.env import SimEnv
from arvla_sim.collect import ThroughController
from arvla_sim.jtc import TrajPoint

FOLLOWER_HZ = 100.0  # the sim node's controller_rate_hz default


class Latency:
    """Step latency model: 'measured' (the step's wall time) or uniform 0..max_ms, seeded."""

    def __init__(self, kind: str, max_ms: float, seed: int):
        self.kind, self.max_ns = kind, int(max_ms * 1e6)
        self.rng = np.random.default_rng(seed)

    def __call__(self, measured_s: float) -> int:
        if self.kind == "measured":
            return int(measured_s * 1e9)
        return int(self.rng.uniform(0, self.max_ns))


def rollout(policy: Any, env: SimEnv, backbone: Any, seed: int, *, timing: str | None = None,
            latency: Latency | None = None, limits: JointLimits | None = None, lookahead: int = 1,
            lag: int = 2, frame_every: int = 2,
            before_step: Callable[[Any, SimEnv, tuple[np.ndarray, int]], None] | None = None
            ) -> dict[str, Any]:
    """One episode, the perception delay emulated (a frame captured at step c is installed at
    step c + ``lag``; the policy acts from the first prefix on, holding before).

    ``timing`` None: per-step hold (in process); else the trajectory path with that
    trajectory_timing ('arrival' | 'tick' | 'seamless'), ``latency`` and ``limits``.
    ``before_step(policy, env, newest)`` (optional) runs before every policy step, ``newest`` =
    (tokens, capture step) of the prefix in the slot.

    Returns the episode's outcome (seed, success, failure, steps, jerk of the tick samples,
    step_ms) and what a closed-loop record keeps, times in ns from the first tick: per tick
    ``tick_ns``, ``positions`` (measured), ``commands`` (first commanded point) and
    ``command_ns`` (the time it targets), ``staleness`` (steps, -1 = no prefix yet),
    ``latency_s``; every follower sample ``joint_ns`` / ``joint_positions`` (the sim node's
    /joint_states: after each controller update, at 100 Hz; per step in process)."""
    if timing is not None and limits is None:
        raise ValueError(f"timing {timing!r} needs the joint limits the node would use")
    obs = env.reset(seed)
    policy.reset()
    through = ThroughController(env, FOLLOWER_HZ)
    period_ns = through.period_ns
    pending: list[tuple[int, int, np.ndarray]] = []
    started, newest = False, None
    sent: tuple[int, TrajectoryPlan] | None = None
    positions = [np.asarray(obs["state"], np.float64)]
    commands: list[np.ndarray] = []
    command_ns: list[int] = []
    staleness: list[int] = []
    step_s: list[float] = []
    t_start = now_ns = 1_000_000_000  # sim time of the first tick (never 0: a zero stamp means "on arrival")
    through.reset(hold=obs["state"], start_ns=t_start)
    while not env.done():
        t = env.step_index
        if t % frame_every == 0:
            pending.append((t + lag, t, backbone.encode(env.render(), env.task.instruction)))
        while pending and pending[0][0] <= t:
            _, capture, tokens = pending.pop(0)
            policy.refresh_prefix(tokens, capture)
            started, newest = True, (tokens, capture)
        staleness.append(t - newest[1] if newest is not None else -1)
        if before_step is not None and started:
            before_step(policy, env, newest)
        state = np.asarray(obs["state"], np.float64)
        if timing is None:
            t0 = time.perf_counter()
            action = policy.step(state, t)[0] if started else state
            step_s.append(time.perf_counter() - t0 if started else 0.0)  # 0: the model did not run
            commands.append(np.asarray(action, np.float64))
            command_ns.append(now_ns + period_ns - t_start)
            obs = env.step(action)
            now_ns += period_ns
            positions.append(np.asarray(obs["state"], np.float64))
            through.joint_ns.append(now_ns - t_start)  # per step: the sample the period ends with
            through.joint_positions.append(positions[-1])
            continue
        # --- the node's tick at now_ns, then the message reaches the follower after the latency
        arrive_ns = now_ns
        if started:
            t0 = time.perf_counter()
            targets = policy.step(state, t, lookahead)
            step_s.append(time.perf_counter() - t0)
            keep = seamless_start(sent, now_ns, state, period_ns, limits) if timing == "seamless" else None
            plan = build_plan(state, targets, period_ns, limits, keep=keep)
            arrive_ns = now_ns + (latency(step_s[-1]) if latency else 0)
        else:
            plan = hold_plan(state, period_ns, limits)
            step_s.append(0.0)  # the model did not run (as the node reports a holding tick)
        stamp = 0 if timing == "arrival" else now_ns
        commands.append(np.asarray(plan.positions[0], np.float64))
        # the time the first point targets (stamp 0 = "on arrival": a period on, as the monitor reads it)
        command_ns.append((now_ns + int(plan.times_ns[0]) if stamp else now_ns + period_ns) - t_start)
        points = [TrajPoint(list(p), int(tk), list(v)) for p, tk, v in
                  zip(plan.positions, plan.times_ns, plan.velocities)]
        through.advance(points, stamp_ns=stamp, arrive_ns=arrive_ns)  # the follower's 100 Hz ticks
        sent = (stamp, plan)
        now_ns += period_ns
        obs = env.observe()
        positions.append(np.asarray(obs["state"], np.float64))
    traj = np.stack(positions)
    n = len(commands)
    ran = [x for x in step_s if x > 0]  # the ticks that ran the model
    return {"seed": seed, "success": env.success(), "failure": env.failure(), "steps": env.step_index,
            "jerk": metrics.rms_jerk(traj, env.dt), "positions": traj,
            "step_ms": 1e3 * float(np.median(ran)) if ran else float("nan"),
            "tick_ns": np.arange(n, dtype=np.int64) * period_ns,
            "tick_positions": traj[:n], "commands": np.stack(commands) if n else np.zeros((0, traj.shape[1])),
            "command_ns": np.asarray(command_ns, np.int64), "staleness": np.asarray(staleness, np.int64),
            "latency_s": np.asarray(step_s, np.float64),
            "joint_ns": np.asarray(through.joint_ns, np.int64), "joint_positions": np.stack(through.joint_positions)}

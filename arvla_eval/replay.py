"""``arvla replay BAG``: open-loop replay of a recorded bag through a policy, on the bag's clock.

No ROS: the bag is read with ``arvla_data.bag`` (rosbags), and each control tick does what the
expert node does, with the node's own rules (``arvla_action_expert.reanchor``):

- ticks at ``t_k = t0 + k * dt`` from the first joint-state stamp (``dt`` = the policy's rate);
- a prefix becomes AVAILABLE when it arrived: its ``compute_stamp`` when set, else its bag
  receive time moved onto the stamp clock (median receive-minus-stamp offset of the joint
  states, as ``episodes.bag_to_episode`` does); it is INSTALLED at the first tick after that,
  with ``capture_step = time_to_step(header.stamp)``, if it is newer than the one in use;
- ``decide_prefix`` decides USE / ACTION_ONLY (step the policy) or hold / wait (no action);
- the state is the newest joint state stamped at or before ``t_k`` (by joint name).

Predicted row 0 is compared with the RECORDED action of the step: the first point of the
newest command received before ``t_k + dt`` (the command topic), or the next joint state when
the bag has no commands. Open loop: the policy's actions are not executed, so the error is a
teacher-forced one-step error, and prefix staleness is the one the recording had.

The recorded motion's smoothness is reported too, measured as the evaluation records measure it
(``metrics.rms_jerk_stamped``: samples at their own stamps, resampled onto a grid of one control
period), so a real robot's wall-clock stamps and their jitter do not read as jerk.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Sequence

import numpy as np

from arvla_base.rosutil import stamp_to_ns
from arvla_action_expert.reanchor import PrefixDecision, decide_prefix, time_to_step
from arvla_eval import metrics
from arvla_data.bag import BagError, BagReader

__all__ = ["ReplayResult", "replay_bag"]

JOINT_STATE = "sensor_msgs/msg/JointState"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
VL_PREFIX = "arvla_msgs/msg/VLPrefix"


@dataclasses.dataclass
class ReplayResult:
    joint_names: list[str]
    steps: np.ndarray            # (K,) step index of each tick that acted
    predicted: np.ndarray        # (K, D) row 0 of the policy
    recorded: np.ndarray         # (K, D) the recorded action of the step
    staleness: np.ndarray        # (K,) steps, -1 = no prefix (action-only)
    latency_s: np.ndarray        # (K,) wall time of policy.step
    ticks: int                   # ticks in the bag's time range
    held: int                    # ticks that did not act (stale / waiting)
    prefixes_used: int
    recorded_jerk: float = float("nan")          # rad/s^3: the bag's joint states at their stamps
    recorded_command_jerk: float = float("nan")  # rad/s^3: its commands at their times (NaN: none)

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.predicted - self.recorded)))

    @property
    def mae_per_joint(self) -> np.ndarray:
        return np.mean(np.abs(self.predicted - self.recorded), axis=0)

    def summary(self) -> str:
        lines = [f"{len(self.steps)} of {self.ticks} ticks acted ({self.held} held/waiting), "
                 f"{self.prefixes_used} prefixes used",
                 f"action MAE vs recorded: {self.mae:.4f} (per joint: "
                 + ", ".join(f"{n} {v:.4f}" for n, v in zip(self.joint_names, self.mae_per_joint))
                 + ")"]
        st = self.staleness[self.staleness >= 0]
        if st.size:
            s = metrics.staleness_summary(st)
            hist = ", ".join(f"{k}: {v}" for k, v in sorted(s.histogram.items()))
            lines.append(f"staleness (steps): p50 {s.p50:.0f}, p95 {s.p95:.0f}, max {s.max}; "
                         f"histogram {{{hist}}}")
        if np.isfinite(self.recorded_jerk) or np.isfinite(self.recorded_command_jerk):
            cmd = (f"{self.recorded_command_jerk:.1f}" if np.isfinite(self.recorded_command_jerk)
                   else "-")
            lines.append(f"recorded motion: RMS jerk {self.recorded_jerk:.1f} rad/s^3 (joint "
                         f"states at their stamps), commands {cmd} rad/s^3")
        if self.latency_s.size:
            lat = metrics.latency_summary(self.latency_s)
            lines.append(f"step latency: p50 {lat.p50 * 1e3:.2f} ms, p99 {lat.p99 * 1e3:.2f} ms, "
                         f"max {lat.max * 1e3:.2f} ms")
        return "\n".join(lines)


def _by_name(names: Sequence[str], values: Sequence[float], want: Sequence[str], what: str
             ) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    missing = [j for j in want if j not in index]
    if missing:
        raise BagError(f"{what}: joint(s) {missing} missing; it names {list(names)}")
    v = np.asarray(values, np.float64)
    return v[[index[j] for j in want]]


def _rms_jerk_or_nan(stamps_ns: np.ndarray, values: np.ndarray, period_ns: int) -> float:
    """RMS jerk of stamped samples on the control-period grid; NaN when too short for one."""
    try:  # stamps relative to the first: float seconds since 1970 would lose the jitter
        return metrics.rms_jerk_stamped((stamps_ns - stamps_ns.min()) * 1e-9, values,
                                        period_ns * 1e-9)
    except ValueError:
        return float("nan")


def replay_bag(path: str | pathlib.Path, policy: Any, *, max_staleness: int = 10,
               allow_action_only: bool = False, future_tolerance: int = 0,
               joint_states_topic: str = "/joint_states",
               command_topic: str = "/arm_controller/joint_trajectory",
               prefix_topic: str = "/arvla/vl_prefix") -> ReplayResult:
    """Replay ``path`` through ``policy`` (ExpertPolicy interface); see the module docstring."""
    path = pathlib.Path(path)
    period = int(round(1e9 / policy.control_rate_hz))
    states: list[tuple[int, int, list[str], Any]] = []       # (stamp, receive, names, pos)
    commands: list[tuple[int, bool, list[str], Any]] = []    # (time, stamped, names, pos)
    command_ahead: list[int] = []                            # first point's time_from_start
    prefixes: list[tuple[int, int, int, Any]] = []           # (capture, compute, receive, msg)
    with BagReader(path) as reader:
        topics = reader.topics
        if joint_states_topic not in topics:
            raise BagError(f"bag {path} has no {joint_states_topic}; it has {sorted(topics)}")
        wanted = [t for t in (joint_states_topic, command_topic, prefix_topic) if t in topics]
        for topic, t_log, msg, _ in reader.messages(wanted):
            if topic == joint_states_topic:
                states.append((stamp_to_ns(msg.header.stamp) or t_log, t_log, list(msg.name), msg.position))
            elif topic == command_topic and msg.points:
                stamp = stamp_to_ns(msg.header.stamp)
                commands.append((stamp or t_log, bool(stamp), list(msg.joint_names),
                                 msg.points[0].positions))
                ahead = msg.points[0].time_from_start
                command_ahead.append(stamp_to_ns(ahead))
            elif topic == prefix_topic:
                prefixes.append((stamp_to_ns(msg.header.stamp), stamp_to_ns(msg.compute_stamp), t_log, msg))
    if len(states) < 2:
        raise BagError(f"bag {path}: {len(states)} joint states on {joint_states_topic}, need >= 2")
    names = list(policy.joint_names) or states[0][2]
    if len(names) != policy.state_dim:
        raise BagError(f"bag {path}: {len(names)} joints {names} for a policy with state_dim "
                       f"{policy.state_dim}")
    states.sort(key=lambda s: s[0])
    st = np.asarray([s[0] for s in states], np.int64)
    sv = np.stack([_by_name(s[2], s[3], names, f"bag {path}: joint state at {s[0]} ns")
                   for s in states])
    offset = int(np.median(np.asarray([s[1] for s in states], np.int64) - st))
    if commands:
        ct = np.asarray([t if stamped else t - offset for t, stamped, _, _ in commands], np.int64)
        order = np.argsort(ct, kind="stable")
        ct = ct[order]
        cv = np.stack([_by_name(commands[i][2], commands[i][3], names,
                                f"bag {path}: command {i}") for i in order])
    avail = sorted((((comp if comp else recv - offset), cap, msg)
                    for cap, comp, recv, msg in prefixes), key=lambda a: (a[0], a[1]))

    policy.reset()
    t0 = int(st[0])
    n_ticks = (int(st[-1]) - t0) // period + 1
    out_steps, pred, rec, stale, lat = [], [], [], [], []
    held = used = 0
    next_prefix = 0
    capture: int | None = None
    capture_ns = -1
    for k in range(n_ticks):
        t = t0 + k * period
        newest = None
        while next_prefix < len(avail) and avail[next_prefix][0] <= t:
            cand = avail[next_prefix]  # arrived by now; keep the newest capture
            next_prefix += 1
            if newest is None or cand[1] > newest[1]:
                newest = cand
        if newest is not None and newest[1] > capture_ns:
            _, cap_ns, msg = newest
            cap = time_to_step(cap_ns, t0, period)
            if decide_prefix(k, cap, max_staleness=10**9, allow_action_only=True,
                             future_tolerance=future_tolerance) is not PrefixDecision.REJECT_FUTURE:
                tokens = np.asarray(msg.data, np.float32).reshape(int(msg.token_count), int(msg.dim))
                policy.refresh_prefix(tokens, cap)
                capture, capture_ns = cap, cap_ns
                used += 1
        decision = decide_prefix(k, capture, max_staleness=max_staleness,
                                 allow_action_only=allow_action_only,
                                 future_tolerance=future_tolerance)
        if decision not in (PrefixDecision.USE, PrefixDecision.ACTION_ONLY):
            held += 1
            continue
        i = int(np.searchsorted(st, t, side="right")) - 1
        if commands:
            j = int(np.searchsorted(ct, t + period, side="left")) - 1
            if j < 0:
                held += 1  # before the first recorded command: nothing to compare with
                continue
            target = cv[j]
        else:
            nxt = int(np.searchsorted(st, t + period, side="right")) - 1
            if nxt <= i:
                continue
            target = sv[nxt]
        start = time.perf_counter()
        action = policy.step(sv[i], k, 1)[0]
        lat.append(time.perf_counter() - start)
        out_steps.append(k)
        pred.append(action)
        rec.append(target)
        stale.append(k - capture if capture is not None else -1)
    if not out_steps:
        raise BagError(f"bag {path}: the policy never acted in {n_ticks} ticks ({held} held or "
                       f"waiting: no usable prefix within max_staleness {max_staleness}?)")
    D = len(names)
    return ReplayResult(names, np.asarray(out_steps), np.asarray(pred).reshape(-1, D),
                        np.asarray(rec).reshape(-1, D), np.asarray(stale, np.int64),
                        np.asarray(lat), n_ticks, held, used,
                        recorded_jerk=_rms_jerk_or_nan(st, sv, period),
                        recorded_command_jerk=(  # at the times the commands target
                            _rms_jerk_or_nan(ct + np.asarray(command_ahead, np.int64)[order], cv,
                                             period) if commands else float("nan")))


def load_any_policy(path: str | pathlib.Path, *, mode: str | None = None) -> Any:
    """An AR expert or chunked-baseline checkpoint, by its config's format."""
    import json

    from arvla_action_expert.checkpoint import CheckpointError, resolve_checkpoint_dir
    from arvla_baselines.chunk import FORMAT as CHUNK_FORMAT

    d = resolve_checkpoint_dir(path)
    try:
        fmt = json.loads((d / "config.json").read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise CheckpointError(f"{d / 'config.json'}: unreadable: {err}") from err
    if fmt == CHUNK_FORMAT:
        from arvla_baselines.chunk import ChunkPolicy

        policy = ChunkPolicy.from_checkpoint(d)
        if mode:
            policy = policy.with_exec(dataclasses.replace(policy.exec, mode=mode))
        return policy
    from arvla_action_expert.policy import ExpertPolicy

    return ExpertPolicy.from_checkpoint(d)



"""A joint_trajectory_controller follower in pure Python (no ROS), with ros2_control's semantics.

What a real ``joint_trajectory_controller`` does with a ``trajectory_msgs/JointTrajectory``
on its topic, and what this class reproduces, so that policies tested against the sim meet the
same behaviour they will meet on a robot:

* a new valid message REPLACES the executing trajectory at once (no queueing, no blending
  beyond starting from the current commanded state);
* start time = ``header.stamp``, or "now" when the stamp is zero;
* points whose absolute time (start + time_from_start) is already past are dropped; a message
  whose every point is past is rejected;
* between points: cubic Hermite when both ends carry velocities, linear otherwise; the segment
  into the first kept point starts from the commanded position/velocity at arrival;
* after the last point: hold its positions, zero velocity;
* malformed messages are rejected with a reason and the current trajectory keeps running:
  unknown / missing / duplicate joint names, no points, wrong lengths, NaN/inf,
  non-increasing time_from_start.

Times are integer nanoseconds on one clock (sim time in the sim node).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrajPoint:
    """One point as in the message: positions, optional velocities, time_from_start (ns)."""

    positions: Sequence[float]
    time_from_start_ns: int
    velocities: Sequence[float] = ()


class TrajectoryRejected(ValueError):
    """A trajectory message violates the controller's rules; str(err) is the reason."""


@dataclasses.dataclass
class _Knot:
    t_ns: int
    pos: np.ndarray
    vel: np.ndarray | None   # None = no velocity given -> linear into/out of this knot


class JointTrajectoryFollower:
    """Holds the active trajectory for a fixed set of joints and samples it at any time."""

    def __init__(self, joint_names: Sequence[str], initial_positions: Sequence[float]):
        if len(set(joint_names)) != len(joint_names) or not joint_names:
            raise ValueError(f"joint_names must be non-empty and unique, got {list(joint_names)}")
        self.joint_names = tuple(joint_names)
        self._n = len(self.joint_names)
        self._knots: list[_Knot] = []
        self.hold(initial_positions)
        self.accepted = 0
        self.rejected = 0
        self.last_reject_reason = ""

    # --- state ---------------------------------------------------------------------------
    def hold(self, positions: Sequence[float], now_ns: int = 0) -> None:
        """Drop any trajectory and hold ``positions`` (e.g. after a reset)."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != (self._n,):
            raise ValueError(f"hold: expected {self._n} positions, got shape {pos.shape}")
        self._knots = [_Knot(int(now_ns), pos.copy(), np.zeros(self._n))]

    @property
    def end_time_ns(self) -> int:
        return self._knots[-1].t_ns

    def is_active(self, now_ns: int) -> bool:
        """True while a trajectory is still moving (now before its last point)."""
        return len(self._knots) > 1 and now_ns < self._knots[-1].t_ns

    # --- messages ------------------------------------------------------------------------
    def validate(self, joint_names: Sequence[str], points: Sequence[TrajPoint]) -> np.ndarray:
        """Check a message; return the permutation msg->ours. Raises TrajectoryRejected."""
        names = list(joint_names)
        if len(set(names)) != len(names):
            raise TrajectoryRejected(f"duplicate joint names in {names}")
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise TrajectoryRejected(f"unknown joint(s) {unknown}; this controller has {list(self.joint_names)}")
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            raise TrajectoryRejected(f"missing joint(s) {missing}; all of {list(self.joint_names)} are required")
        if not points:
            raise TrajectoryRejected("trajectory has no points")
        prev = -1
        for i, p in enumerate(points):
            if len(p.positions) != len(names):
                raise TrajectoryRejected(
                    f"point {i}: {len(p.positions)} positions for {len(names)} joints")
            if len(p.velocities) not in (0, len(names)):
                raise TrajectoryRejected(
                    f"point {i}: {len(p.velocities)} velocities for {len(names)} joints (0 or {len(names)} allowed)")
            values = list(p.positions) + list(p.velocities)
            if not all(math.isfinite(v) for v in values):
                raise TrajectoryRejected(f"point {i}: non-finite value in positions/velocities")
            if p.time_from_start_ns < 0:
                raise TrajectoryRejected(f"point {i}: negative time_from_start {p.time_from_start_ns} ns")
            if p.time_from_start_ns <= prev:
                raise TrajectoryRejected(
                    f"point {i}: time_from_start {p.time_from_start_ns} ns is not after point {i - 1}'s "
                    f"{prev} ns (times must strictly increase)")
            prev = p.time_from_start_ns
        return np.array([names.index(n) for n in self.joint_names])

    def set_trajectory(self, joint_names: Sequence[str], points: Sequence[TrajPoint], *,
                       stamp_ns: int, now_ns: int) -> tuple[bool, str]:
        """Replace the active trajectory with a message; returns (accepted, reason).

        A rejected message leaves the current trajectory untouched (as the real controller does).
        """
        try:
            perm = self.validate(joint_names, points)
            start = now_ns if stamp_ns == 0 else stamp_ns
            knots = []
            for p in points:
                t = start + int(p.time_from_start_ns)
                if t <= now_ns:
                    continue  # already past: dropped
                pos = np.asarray(p.positions, dtype=np.float64)[perm]
                vel = np.asarray(p.velocities, dtype=np.float64)[perm] if len(p.velocities) else None
                knots.append(_Knot(t, pos, vel))
            if not knots:
                raise TrajectoryRejected(
                    f"every point is in the past (last at {start + points[-1].time_from_start_ns} ns, "
                    f"now {now_ns} ns)")
        except TrajectoryRejected as err:
            self.rejected += 1
            self.last_reject_reason = str(err)
            return False, str(err)
        pos0, vel0 = self.sample(now_ns)
        self._knots = [_Knot(now_ns, pos0, vel0)] + knots
        self.accepted += 1
        return True, ""

    # --- sampling ------------------------------------------------------------------------
    def sample(self, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Commanded (positions, velocities) at ``now_ns``, in ``joint_names`` order."""
        k = self._knots
        if now_ns >= k[-1].t_ns:
            return k[-1].pos.copy(), np.zeros(self._n)
        if now_ns <= k[0].t_ns:
            return k[0].pos.copy(), (k[0].vel.copy() if k[0].vel is not None else np.zeros(self._n))
        i = 1
        while k[i].t_ns < now_ns:
            i += 1
        a, b = k[i - 1], k[i]
        h = (b.t_ns - a.t_ns) * 1e-9
        s = (now_ns - a.t_ns) * 1e-9 / h
        if a.vel is not None and b.vel is not None:
            # Cubic Hermite on [0, 1] with tangents scaled by the segment duration.
            h00, h10, h01, h11 = 2*s**3 - 3*s**2 + 1, s**3 - 2*s**2 + s, -2*s**3 + 3*s**2, s**3 - s**2
            pos = h00 * a.pos + h10 * h * a.vel + h01 * b.pos + h11 * h * b.vel
            d00, d10, d01, d11 = 6*s**2 - 6*s, 3*s**2 - 4*s + 1, -6*s**2 + 6*s, 3*s**2 - 2*s
            vel = (d00 * a.pos + d01 * b.pos) / h + d10 * a.vel + d11 * b.vel
            return pos, vel
        vel = (b.pos - a.pos) / h
        return a.pos + s * (b.pos - a.pos), vel


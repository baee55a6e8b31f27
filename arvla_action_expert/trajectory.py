"""Build the short joint trajectory the expert sends to ros2_control each tick.

ROS-free: a ``TrajectoryPlan`` is plain arrays; the node turns it into a
``trajectory_msgs/JointTrajectory``. The rules come from joint_trajectory_controller (JTC):

- JTC replaces the running trajectory when a new one arrives, starting "now" when the header
  stamp is zero. A point at ``time_from_start == 0`` makes it jump (no interpolation), so the
  first point lies one step period ahead.
- ``time_from_start`` must strictly increase.
- Jazzy and later reject a trajectory whose last point has a non-zero velocity (unless
  ``allow_nonzero_velocity_at_trajectory_end``), so the last velocity is 0. That also means
  that if our node stops publishing, the arm comes to rest at the end of the last lookahead.

Latency-proof streaming (``keep``): a trajectory stamped with the tick time whose first point is
the point of the previous trajectory that the controller is already moving towards (same time,
position and velocity). Whenever the message arrives inside the tick, JTC's segment from its
current state into that point is the very segment it was executing (a cubic Hermite through two
points of a cubic is that cubic), so the step's latency no longer shapes the motion; the new
rows follow from there.

Safety is by construction, whatever the model emits (NaN, inf, 1e300): non-finite targets are
replaced by the previous point (that joint holds), each point is kept within ``max_velocity *
period`` of the previous one (starting from the measured position), then clamped to the
position limits, velocities are clipped to the velocity limits. ``check_plan`` re-verifies all
of it before anything is published, so a bug here raises instead of moving the robot.

Continuous joints (``JointLimits.continuous``: a URDF ``continuous`` wrist) have the position
range (-inf, inf): the position clamp leaves them alone, and the velocity bound alone keeps each
point finite and within ``max_velocity * dt`` of the previous one, from the finite measured
position on (the node refuses implausible measurements first). Every rule above holds as is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from arvla_action_expert.joints import JointLimits

# Slack for float rounding in the per-segment check: clip() makes the position and velocity
# bounds exact, but ``prev +- v_max*dt`` is rounded to the ulp of ``prev`` (at 5e5 rad that is
# 1e-10, i.e. 1e-7 of a 1e-3 step), so the bound holds to a few ulps of the positions.
_REL_TOL = 1e-12
_ULPS = 4


class TrajectoryError(ValueError):
    """The trajectory cannot be built safely, or a built one fails the final check."""


@dataclasses.dataclass(frozen=True)
class KeptPoint:
    """A point of the previous trajectory to keep as the first point of the next one.

    ``t_ns``: its time relative to the new trajectory's start (the tick); must lie in
    (0, 2 periods). ``position`` / ``velocity`` (J,) exactly as sent before.
    """

    t_ns: int
    position: np.ndarray
    velocity: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrajectoryPlan:
    """A trajectory for ``limits.names``: K points at ``times_ns`` after "now".

    ``n_nonfinite``: target values that were NaN/inf and replaced by holding the joint;
    ``n_clamped``: target values moved by the position or velocity limits. The node reports
    both (non-finite model output is a fault; clamping is normal near limits).
    """

    times_ns: np.ndarray  # (K,) int64, strictly increasing, > 0
    positions: np.ndarray  # (K, J) float64
    velocities: np.ndarray  # (K, J) float64, last row zero
    n_nonfinite: int = 0
    n_clamped: int = 0
    kept: bool = False  # the first point is the previous trajectory's (see KeptPoint)

    @property
    def n_points(self) -> int:
        return int(self.times_ns.shape[0])


def _start(current: np.ndarray, limits: JointLimits) -> np.ndarray:
    """The measured positions as a start point, clamped into the limits.

    A measurement slightly outside a limit (encoder noise, a controller overshoot) must not
    become a command outside it; the clamp is at most the overshoot itself.
    """
    current = np.asarray(current, dtype=np.float64).reshape(-1)
    if current.shape != (limits.dof,):
        raise TrajectoryError(f"current position has {current.size} values for {limits.dof} joints")
    if not np.all(np.isfinite(current)):
        bad = [n for n, x in zip(limits.names, current) if not np.isfinite(x)]
        raise TrajectoryError(f"current position is not finite for joints {bad}")
    return np.clip(current, limits.lower, limits.upper)


def hold_plan(current: np.ndarray, period_ns: int, limits: JointLimits) -> TrajectoryPlan:
    """Keep the measured position: one point at t = one period, zero velocity."""
    if period_ns <= 0:
        raise TrajectoryError(f"period must be > 0 ns, got {period_ns}")
    start = _start(current, limits)
    plan = TrajectoryPlan(np.array([period_ns], dtype=np.int64), start[None, :].copy(),
                          np.zeros((1, limits.dof)))
    check_plan(plan, current, limits)
    return plan


def point_in_execution(sent_stamp_ns: int, sent: TrajectoryPlan, now_ns: int, period_ns: int) -> KeptPoint | None:
    """The point of a trajectory sent with header stamp ``sent_stamp_ns`` that the controller is
    moving towards at the next tick boundary: the first one more than half a period after
    ``now_ns`` (robust to timer jitter), as a KeptPoint relative to ``now_ns``. None for a
    trajectory stamped 0 (its start is unknown: it began on arrival) or one that has ended."""
    if sent_stamp_ns <= 0:
        return None
    ahead = sent_stamp_ns + sent.times_ns - now_ns  # (K,) ns from now
    later = np.flatnonzero(ahead > period_ns // 2)
    if later.size == 0:
        return None
    k = int(later[0])
    return KeptPoint(int(ahead[k]), sent.positions[k], sent.velocities[k])


def seamless_start(sent: tuple[int, TrajectoryPlan] | None, now_ns: int, current: np.ndarray, period_ns: int,
                   limits: JointLimits) -> KeptPoint:
    """The first point of a 'seamless' plan at the tick ``now_ns``: the point in execution of the
    last trajectory sent (``sent`` = (header stamp, plan)), or -- nothing in execution (episode
    start, after a hold) -- a hold at the measured position one period ahead (zero velocity).
    Both make JTC's segment across the message's arrival the same whatever the arrival time:
    the one it was executing, or standing still where the arm is. ``build_plan`` decides how
    much of it can be kept (``keep_point``)."""
    keep = point_in_execution(*sent, now_ns, period_ns) if sent is not None else None
    if keep is not None:
        return keep
    return KeptPoint(int(period_ns), _start(current, limits), np.zeros(limits.dof))


def keep_point(keep: KeptPoint | None, current: np.ndarray, period_ns: int, limits: JointLimits
               ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """What of ``keep`` may start the next plan: (position, velocity, joints changed), or None.

    None (the plan starts afresh from the measured position) unless the point is finite and
    lies in (0, 2 periods) from now. Per joint, the point must be reachable from the measured
    position within its time at the velocity limit, and inside the position and velocity
    limits -- the rules every first point obeys. A joint that is not (a gripper closed on an
    object trails its command by more than a step; someone pushed the arm) is moved towards the
    measurement until it is, with zero velocity there; the other joints keep the point exactly.
    """
    if keep is None:
        return None
    pos = np.asarray(keep.position, dtype=np.float64)
    vel = np.asarray(keep.velocity, dtype=np.float64)
    if pos.shape != (limits.dof,) or vel.shape != (limits.dof,):
        return None
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))):
        return None
    if not 0 < keep.t_ns < 2 * period_ns:
        return None
    start = _start(current, limits)
    reach = limits.max_velocity * (keep.t_ns * 1e-9)
    new_pos = np.clip(np.clip(pos, start - reach, start + reach), limits.lower, limits.upper)
    changed = new_pos != pos
    new_vel = np.where(changed, 0.0, np.clip(vel, -limits.max_velocity, limits.max_velocity))
    changed |= new_vel != vel
    return new_pos, new_vel, int(np.count_nonzero(changed))


def build_plan(current: np.ndarray, targets: np.ndarray, period_ns: int, limits: JointLimits,
               keep: KeptPoint | None = None) -> TrajectoryPlan:
    """Turn K absolute joint targets (one per control step) into a safe trajectory.

    ``current`` (J,) is the measured position (must be finite: the node holds on bad joint
    states before it gets here). ``targets`` (K, J) may hold anything; row k is the target for
    ``(k + 1) * period_ns``. Velocities: the mean of the two adjacent segment velocities
    (a smooth cubic through the points for JTC's spline), 0 at the last point.

    ``keep``: what ``keep_point`` allows of it is the first point (its own time, position and
    velocity) and every row comes one period later, row k at ``(k + 2) * period_ns``: the
    policy's plan is executed one period after the tick, behind the point already in
    execution, so the step's latency cannot shape it. ``plan.kept`` says so; joints of the
    kept point moved to obey the limits count in ``n_clamped``.
    """
    if period_ns <= 0:
        raise TrajectoryError(f"period must be > 0 ns, got {period_ns}")
    start = _start(current, limits)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != limits.dof or targets.shape[0] < 1:
        raise TrajectoryError(f"targets must be (K>=1, {limits.dof}), got shape {targets.shape}")
    first = keep_point(keep, current, period_ns, limits)
    times_ns = np.arange(1, targets.shape[0] + 1, dtype=np.int64) * np.int64(period_ns)  # row k
    positions = np.empty_like(targets)
    prev, prev_t, offset = start, 0, 0
    n_nonfinite = n_clamped = 0
    if first is not None:  # the kept point goes first, each row one period later
        assert keep is not None
        times_ns = np.concatenate([[np.int64(keep.t_ns)], times_ns + np.int64(period_ns)])
        positions = np.vstack([first[0][None, :], positions])
        prev, prev_t, offset, n_clamped = first[0], keep.t_ns, 1, first[2]
    for r, row in enumerate(targets):
        k = r + offset
        finite = np.isfinite(row)
        n_nonfinite += int(np.count_nonzero(~finite))
        wanted = np.where(finite, row, prev)  # a NaN/inf joint holds where it was
        max_step = limits.max_velocity * ((int(times_ns[k]) - prev_t) * 1e-9)  # (J,) largest move
        # Velocity bound first, then position bound: prev is inside [lower, upper], so clamping
        # into the position range can only move the point towards prev (both bounds hold).
        with np.errstate(over="ignore"):
            step = np.clip(wanted, prev - max_step, prev + max_step)
        point = np.clip(step, limits.lower, limits.upper)
        n_clamped += int(np.count_nonzero(finite & (point != row)))
        positions[k] = point
        prev, prev_t = point, int(times_ns[k])

    # Segment velocities, clipped: (p_k - p_{k-1}) / dt can only exceed v_max by rounding,
    # the clip makes the bound exact (and maps a would-be overflow to v_max).
    previous = np.vstack([start[None, :], positions[:-1]])
    durations = np.diff(np.concatenate([[0], times_ns])) * 1e-9  # (K,) seconds
    with np.errstate(over="ignore"):
        seg = np.clip((positions - previous) / durations[:, None], -limits.max_velocity, limits.max_velocity)
    velocities = np.zeros_like(positions)
    if positions.shape[0] > 1:
        # Halves added separately so two finite values can never overflow to inf.
        velocities[:-1] = 0.5 * seg[:-1] + 0.5 * seg[1:]
    if first is not None:
        velocities[0] = first[1]  # as sent (the same cubic), 0 where the point was moved
    plan = TrajectoryPlan(times_ns, positions, velocities, n_nonfinite, n_clamped, first is not None)
    check_plan(plan, current, limits)
    return plan


def check_plan(plan: TrajectoryPlan, current: np.ndarray, limits: JointLimits) -> None:
    """Raise TrajectoryError unless ``plan`` is safe to hand to JTC.

    Checked: shapes; all values finite; times > 0 and strictly increasing; last velocity zero;
    positions within the position limits; velocities within the velocity limits; each segment
    (from the clamped measured position) moves at most ``max_velocity * segment duration``.
    """
    k = plan.n_points
    j = limits.dof
    if k < 1 or plan.positions.shape != (k, j) or plan.velocities.shape != (k, j):
        raise TrajectoryError(f"plan shapes: times {plan.times_ns.shape}, positions {plan.positions.shape}, "
                              f"velocities {plan.velocities.shape}, expected ({k}, {j})")
    if not (np.all(np.isfinite(plan.positions)) and np.all(np.isfinite(plan.velocities))):
        raise TrajectoryError("plan has NaN/inf values")
    times = plan.times_ns.astype(np.int64)
    if times[0] <= 0 or np.any(np.diff(times) <= 0):
        raise TrajectoryError(f"plan times must be > 0 and strictly increasing, got {times.tolist()} ns")
    if np.any(plan.velocities[-1] != 0.0):
        raise TrajectoryError(f"last point velocity must be zero, got {plan.velocities[-1].tolist()}")
    if np.any(plan.positions < limits.lower) or np.any(plan.positions > limits.upper):
        raise TrajectoryError("plan positions outside the joint position limits")
    if np.any(np.abs(plan.velocities) > limits.max_velocity):
        raise TrajectoryError("plan velocities exceed the joint velocity limits")
    start = _start(current, limits)
    previous = np.vstack([start[None, :], plan.positions[:-1]])
    durations = np.diff(np.concatenate([[0], times])) * 1e-9  # (K,) seconds per segment
    allowed = limits.max_velocity[None, :] * durations[:, None]
    with np.errstate(over="ignore"):
        moved = np.abs(plan.positions - previous)
        slack = allowed * _REL_TOL + _ULPS * np.spacing(np.maximum(np.abs(plan.positions), np.abs(previous)))
        too_far = moved > allowed + slack
    if np.any(too_far):
        k_bad, j_bad = np.argwhere(too_far)[0]
        raise TrajectoryError(f"segment {k_bad} moves joint {limits.names[j_bad]} by {moved[k_bad, j_bad]:.6g}, "
                              f"more than max_velocity*dt = {allowed[k_bad, j_bad]:.6g}")

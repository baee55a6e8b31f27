"""A gripper on its own controller: one action dimension of the policy, sent apart from the arm.

ROS-free. Many MoveIt setups drive the gripper with its own controller: a
``GripperActionController`` (``control_msgs/action/GripperCommand``) or a second
joint_trajectory_controller. The policy still has one dimension for it (state: the gripper
joint's measured position; action: its target). The expert node sends that dimension to the
gripper controller:

- at most ``rate_hz`` times a second, and only when the target moved more than ``deadband``
  since the last goal (a gripper goal is a slow, preempting command: a new goal every 50 ms would
  only restart it);
- never waiting: goals go out asynchronously; a missing action server is counted, not awaited;
- inside the gripper joint's position limits (targets clamped, NaN/inf targets send nothing),
  and for a trajectory controller at most at its velocity limit (``trajectory.build_plan``),
  joints that mimic the gripper joint in the URDF following it exactly (multiplier * q + offset),
  checked against their own limits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from arvla_action_expert.joints import JointLimits
from arvla_action_expert.trajectory import TrajectoryPlan, build_plan, check_plan

GRIPPER_COMMANDS = ("auto", "gripper_action", "joint_trajectory")


@dataclasses.dataclass(frozen=True)
class GripperSpec:
    """Where the gripper dimension goes.

    ``joint``: the policy's gripper dimension (a joint_states name). ``command``:
    'gripper_action' (a GripperCommand goal on ``action_name``) or 'joint_trajectory' (a
    JointTrajectory on ``topic`` naming ``controller_joints``: ``joint`` and its ``followers``,
    the joints that mimic it, each (name, multiplier, offset)).
    """

    controller: str
    joint: str
    command: str
    controller_joints: tuple[str, ...]
    followers: tuple[tuple[str, float, float], ...] = ()
    action_name: str = ""
    topic: str = ""

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["followers"] = [list(f) for f in self.followers]
        return out


class GripperLimiter:
    """When a new gripper goal may go out: not faster than ``rate_hz``, and only for a target that
    differs from the last one sent by more than ``deadband`` (the first goal always goes)."""

    def __init__(self, rate_hz: float, deadband: float):
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"gripper rate must be finite and > 0 Hz, got {rate_hz}")
        if not (deadband >= 0 and math.isfinite(deadband)):
            raise ValueError(f"gripper deadband must be finite and >= 0, got {deadband}")
        self.min_interval_ns = int(round(1e9 / rate_hz))
        self.deadband = deadband
        self.reset()

    def reset(self) -> None:
        self.last_ns: Optional[int] = None
        self.last_target: Optional[float] = None

    def due(self, now_ns: int, target: float) -> bool:
        if self.last_ns is None or self.last_target is None:
            return True
        if now_ns < self.last_ns:  # the clock jumped back (sim reset): start over
            return True
        if now_ns - self.last_ns < self.min_interval_ns:
            return False
        return abs(target - self.last_target) > self.deadband

    def sent(self, now_ns: int, target: float) -> None:
        self.last_ns, self.last_target = now_ns, target


def gripper_target(rows: Sequence[float], limits: JointLimits) -> Optional[float]:
    """The goal position for the gripper joint (``limits`` of that one joint) from the policy's
    rows for it (row 0 = this step's action): clamped into the position limits; None if the
    model gave NaN/inf (nothing is sent; the gripper keeps its last goal)."""
    value = float(np.asarray(rows, dtype=np.float64).reshape(-1)[0])
    if not math.isfinite(value):
        return None
    return float(np.clip(value, limits.lower[0], limits.upper[0]))


def follower_positions(value: float, followers: Sequence[tuple[str, float, float]]) -> list[float]:
    """Positions of the joints that mimic the gripper joint (URDF: multiplier * value + offset)."""
    return [mult * value + offset for _, mult, offset in followers]


def gripper_trajectory(measured: float, rows: Sequence[float], spec: GripperSpec, period_ns: int,
                       limits: JointLimits) -> TrajectoryPlan:
    """A safe JointTrajectory plan for a gripper joint-trajectory controller.

    ``limits``: of ``spec.controller_joints`` (gripper joint first, then its followers);
    ``rows``: the policy's targets for the gripper joint, one per step. The gripper joint's plan
    is built like the arm's (``build_plan``: position, velocity, finite); followers take the mimic
    relation of each point exactly (positions multiplier * q + offset, velocities multiplier * v),
    and the whole plan is checked against every joint's own limits (``check_plan``: a relation
    that would leave a follower's limits raises TrajectoryError, nothing is sent).
    """
    leader = limits.subset([spec.joint])
    rows_arr = np.asarray(rows, dtype=np.float64).reshape(-1, 1)
    plan = build_plan(np.array([measured]), rows_arr, period_ns, leader)
    if not spec.followers:
        return plan
    mult = np.array([1.0] + [f[1] for f in spec.followers])  # (J,)
    offset = np.array([0.0] + [f[2] for f in spec.followers])
    full = dataclasses.replace(plan, positions=plan.positions * mult + offset, velocities=plan.velocities * mult)
    start = np.clip(np.array([measured]), leader.lower, leader.upper) * mult + offset
    check_plan(full, start, limits)
    return full

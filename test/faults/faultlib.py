"""Shared pieces of the fault suite: the session ledger, a safety monitor, message builders.

The ledger is what the suite reports at the end (conftest.py prints it with
``pytest_terminal_summary`` and fails the session if crashes or unsafe commands are non-zero).
Tests report into it as they go: every adversarial message sent (``inputs``), every fault
injected (process kill, clock jump, corrupt file...), every trajectory checked, and -- the two
numbers that must stay 0 -- crashes (a node raising out of its executor, a process dying on bad
input) and unsafe commands (a trajectory a joint_trajectory_controller must not receive).

The safety monitor checks trajectories independently of ``arvla_action_expert.trajectory``
(its own arithmetic, not ``check_plan``), so a bug shared by the builder and its own check
still shows up here.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import math
import os
import pathlib
from typing import Any, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class FaultLedger:
    """Counts for the end-of-session summary (one instance per pytest session: ``LEDGER``)."""

    inputs: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    crashes: list[str] = dataclasses.field(default_factory=list)
    unsafe: list[str] = dataclasses.field(default_factory=list)
    commands_checked: int = 0
    used: bool = False

    def input(self, kind: str, n: int = 1) -> None:
        self.used = True
        self.inputs[kind] += n

    def fault(self, kind: str, n: int = 1) -> None:
        self.used = True
        self.faults[kind] += n

    def crash(self, what: str) -> None:
        self.used = True
        self.crashes.append(what)

    def unsafe_command(self, what: str) -> None:
        self.used = True
        self.unsafe.append(what)

    def checked(self, n: int = 1) -> None:
        self.used = True
        self.commands_checked += n

    @staticmethod
    def _grouped(counter: collections.Counter) -> str:
        """'checkpoint x10, clock_jump_back x3, ...': kinds summed by their part before ':'."""
        groups: collections.Counter = collections.Counter()
        for kind, n in counter.items():
            groups[kind.split(":")[0]] += n
        return ", ".join(f"{k} x{v}" for k, v in sorted(groups.items()))

    def summary_lines(self) -> list[str]:
        lines = [f"inputs tried:      {sum(self.inputs.values())} messages in {len(self.inputs)} kinds "
                 f"({self._grouped(self.inputs)})",
                 f"faults injected:   {sum(self.faults.values())} in {len(self.faults)} kinds "
                 f"({self._grouped(self.faults)})",
                 f"commands checked:  {self.commands_checked} trajectories",
                 f"crashes:           {len(self.crashes)}",
                 f"unsafe commands:   {len(self.unsafe)}"]
        lines += [f"  CRASH: {c}" for c in self.crashes[:20]]
        lines += [f"  UNSAFE: {u}" for u in self.unsafe[:20]]
        return lines


LEDGER = FaultLedger()


# ---------------------------------------------------------------------------------------------
# Trajectory safety, checked independently of the builder


def trajectory_problems(names: Sequence[str], times_ns: Sequence[int], positions: np.ndarray,
                        velocities: np.ndarray, *, joints: Sequence[str], lower: np.ndarray,
                        upper: np.ndarray, vmax: np.ndarray,
                        start: Optional[np.ndarray] = None) -> list[str]:
    """Why a trajectory must not reach ros2_control ([] = well formed and inside the limits).

    Rules: names are the controller's joints in order; >= 1 point; first time > 0 and times
    strictly increasing; every value finite; positions inside [lower, upper]; |velocity| <= vmax;
    last velocity exactly 0; each segment moves at most vmax * its duration (the first segment
    from ``start`` clamped into the limits, when given). Tolerance: 1e-9 relative.
    """
    bad: list[str] = []
    if list(names) != list(joints):
        bad.append(f"joint_names {list(names)} != {list(joints)}")
        return bad
    k = len(times_ns)
    positions = np.asarray(positions, dtype=np.float64).reshape(k, -1) if k else np.zeros((0, len(joints)))
    velocities = np.asarray(velocities, dtype=np.float64).reshape(k, -1) if k else np.zeros((0, len(joints)))
    if k == 0:
        return ["no points"]
    if positions.shape != (k, len(joints)) or velocities.shape != (k, len(joints)):
        return [f"shapes: positions {positions.shape}, velocities {velocities.shape}, {k} points x "
                f"{len(joints)} joints"]
    t = [int(x) for x in times_ns]
    if t[0] <= 0:
        bad.append(f"first point at t={t[0]} ns (JTC would jump)")
    if any(b <= a for a, b in zip(t, t[1:])):
        bad.append(f"times not strictly increasing: {t}")
    if not (np.isfinite(positions).all() and np.isfinite(velocities).all()):
        bad.append("NaN/inf in positions or velocities")
        return bad
    if np.any(positions < lower) or np.any(positions > upper):
        bad.append(f"position outside limits: {positions.tolist()}")
    if np.any(np.abs(velocities) > vmax * (1 + 1e-9)):
        bad.append(f"velocity above limit: {velocities.tolist()}")
    if np.any(velocities[-1] != 0.0):
        bad.append(f"last velocity {velocities[-1].tolist()} not zero")
    prev = None if start is None else np.clip(np.asarray(start, np.float64), lower, upper)
    last_t = 0
    for i in range(k):
        dt = (t[i] - last_t) * 1e-9
        if prev is not None and dt > 0:
            allowed = vmax * dt
            moved = np.abs(positions[i] - prev)
            # float rounding of |a - b| at large magnitudes is a few ulps of the operands
            ulps = 4 * np.spacing(np.maximum(np.abs(positions[i]), np.abs(prev)))
            if np.any(moved > allowed * (1 + 1e-9) + 1e-12 + ulps):
                bad.append(f"segment {i} moves {moved.tolist()} > vmax*dt {allowed.tolist()}")
        prev, last_t = positions[i], t[i]
    return bad


class SafetyMonitor:
    """Subscribes to the trajectory topic like a JTC; every message is checked and counted.

    ``start``: the measured position the expert acts from (the test sets it when it sends a
    valid joint state); None skips the first-segment check.
    """

    def __init__(self, node: Any, topic: str, *, joints: Sequence[str], lower: Sequence[float],
                 upper: Sequence[float], vmax: Sequence[float], ledger: FaultLedger = LEDGER):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from trajectory_msgs.msg import JointTrajectory

        self.joints = list(joints)
        self.lower, self.upper, self.vmax = (np.asarray(x, np.float64) for x in (lower, upper, vmax))
        self.ledger = ledger
        self.start: Optional[np.ndarray] = None
        self.messages: list[Any] = []
        self.violations: list[str] = []
        node.create_subscription(JointTrajectory, topic, self._on_trajectory,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def _on_trajectory(self, msg: Any) -> None:
        self.messages.append(msg)
        self.ledger.checked()
        times = [p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec for p in msg.points]
        try:
            pos = np.array([list(p.positions) for p in msg.points], dtype=np.float64)
            vel = np.array([list(p.velocities) for p in msg.points], dtype=np.float64)
        except ValueError:  # ragged
            problems = ["ragged point arrays"]
        else:
            problems = trajectory_problems(msg.joint_names, times, pos, vel, joints=self.joints,
                                           lower=self.lower, upper=self.upper, vmax=self.vmax,
                                           start=self.start)
        for p in problems:
            what = f"trajectory #{len(self.messages) - 1}: {p}"
            self.violations.append(what)
            self.ledger.unsafe_command(what)

    @staticmethod
    def is_hold(msg: Any) -> bool:
        return len(msg.points) == 1 and all(v == 0.0 for v in msg.points[0].velocities)


# ---------------------------------------------------------------------------------------------
# Messages


def prefix_msg(stamp_ns: int, *, frame_seq: int, model_id: str, token_count: int, dim: int,
               data: Any) -> Any:
    """A VLPrefix with ``data`` as float32 (an array.array: no per-element Python conversion)."""
    from arvla_msgs.msg import VLPrefix

    from arvla_base.rosutil import ns_to_stamp

    msg = VLPrefix()
    ns_to_stamp(stamp_ns, msg.header.stamp)
    msg.frame_seq, msg.model_id, msg.token_count, msg.dim = frame_seq, model_id, token_count, dim
    msg.data = array.array("f", np.ascontiguousarray(data, dtype=np.float32).tobytes())
    return msg


def joint_state_msg(names: Sequence[str], positions: Sequence[float], stamp_ns: int = 0) -> Any:
    from sensor_msgs.msg import JointState

    from arvla_base.rosutil import ns_to_stamp

    msg = JointState()
    ns_to_stamp(stamp_ns, msg.header.stamp)
    msg.name = list(names)
    msg.position = array.array("d", [float(x) for x in positions])
    return msg


def image_msg(height: int, width: int, encoding: str, step: int, data: bytes, stamp_ns: int) -> Any:
    from sensor_msgs.msg import Image

    from arvla_base.rosutil import ns_to_stamp

    msg = Image(height=height, width=width, encoding=encoding, step=step)
    ns_to_stamp(stamp_ns, msg.header.stamp)
    msg.header.frame_id = "camera_optical"
    msg.data = data
    return msg


# ---------------------------------------------------------------------------------------------
# Process / memory helpers


def rss_mb(pid: Optional[int] = None) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    text = pathlib.Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc status")


class PickleBomb:
    """Unpickling this creates ``marker`` (``open(marker, 'w')``): proof that a pickle was run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)

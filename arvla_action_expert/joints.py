"""Joints by name: the controller's joint list, joint limits, and reading measured positions.

ROS-free (no rclpy import) so every rule here is unit-tested without a ROS graph. The action
expert node only converts messages into the plain lists/arrays these functions take.

Why by name: ``sensor_msgs/JointState`` gives no order guarantee (joint_state_broadcaster
publishes in interface order, a bag from another robot driver in another), and the same topic
often carries extra joints (gripper fingers, a mobile base). The trajectory we send must name
exactly the joints of the controller, so every lookup goes through names.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from arvla.config import ConfigError, load_yaml


class JointError(ValueError):
    """A joint list or joint limits file is unusable; the message names the joint and key."""


@dataclasses.dataclass(frozen=True)
class JointLimits:
    """Per-joint position and velocity limits, in the order of ``names``.

    Position limits must be finite: a command clamped to +-inf is no clamp at all, and the
    trajectory builder relies on finite bounds to guarantee finite output. Velocity limits
    (rad/s or m/s) must be finite and > 0; they bound the motion of each trajectory segment.
    """

    names: tuple[str, ...]
    lower: np.ndarray  # (J,) float64
    upper: np.ndarray  # (J,) float64
    max_velocity: np.ndarray  # (J,) float64

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise JointError("joint limits: no joints")
        if len(set(self.names)) != n:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise JointError(f"joint limits: duplicate joint names {dup}")
        for key in ("lower", "upper", "max_velocity"):
            arr = np.asarray(getattr(self, key), dtype=np.float64).reshape(-1).copy()
            if arr.shape != (n,):
                raise JointError(f"joint limits: {key} has {arr.size} values for {n} joints")
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        for i, name in enumerate(self.names):
            lo, hi, v = self.lower[i], self.upper[i], self.max_velocity[i]
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise JointError(f"joint limits: {name}: position limits must be finite, got [{lo}, {hi}]")
            if not lo < hi:
                raise JointError(f"joint limits: {name}: lower {lo} must be < upper {hi}")
            if not (math.isfinite(v) and v > 0):
                raise JointError(f"joint limits: {name}: max_velocity must be finite and > 0, got {v}")

    @property
    def dof(self) -> int:
        return len(self.names)


def controller_joints_from_yaml(path: str | os.PathLike[str], controller_name: str) -> list[str]:
    """The ``joints`` list of ``controller_name`` in a ros2_controllers.yaml file.

    Accepts the controller's block at top level under its plain name or a namespaced name
    (``/robot/arm_controller``, ``/**/arm_controller``), as ros2_control's param files do.
    """
    try:
        data = load_yaml(path)
    except ConfigError as err:
        raise JointError(str(err)) from err
    candidates = [k for k in data if isinstance(k, str) and k.rstrip("/").split("/")[-1] == controller_name]
    if not candidates:
        raise JointError(f"{path}: no controller '{controller_name}' (top-level keys: {sorted(map(str, data))})")
    if len(candidates) > 1:
        raise JointError(f"{path}: controller '{controller_name}' is defined more than once: {candidates}")
    block = data[candidates[0]]
    params = block.get("ros__parameters") if isinstance(block, dict) else None
    if not isinstance(params, dict):
        raise JointError(f"{path}: {candidates[0]}.ros__parameters is missing or not a mapping")
    joints = params.get("joints")
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints):
        raise JointError(f"{path}: {candidates[0]}.ros__parameters.joints must be a non-empty list of names, "
                         f"got {joints!r}")
    if len(set(joints)) != len(joints):
        raise JointError(f"{path}: {candidates[0]}.ros__parameters.joints has duplicates: {joints}")
    return list(joints)


def _limit_entry(entry: Any, flag: str, keys: Sequence[str]) -> tuple[float, ...] | None:
    """Values ``keys`` of a MoveIt joint_limits entry if ``flag`` is on (or absent but values given)."""
    if not isinstance(entry, dict):
        return None
    enabled = entry.get(flag)
    if enabled is False:
        return None
    if not all(k in entry for k in keys):
        if enabled:
            raise JointError(f"{flag} is true but {', '.join(k for k in keys if k not in entry)} missing")
        return None
    values = []
    for k in keys:
        v = entry[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise JointError(f"{k}: expected a number, got {v!r}")
        values.append(float(v))
    return tuple(values)


def limits_from_joint_limits_yaml(path: str | os.PathLike[str], joints: Sequence[str]
                                  ) -> dict[str, dict[str, float]]:
    """Limits found for ``joints`` in a MoveIt-style joint_limits.yaml.

    Returns ``{joint: {"lower":..,"upper":..,"max_velocity":..}}`` with only the limits the
    file actually gives (MoveIt files often carry velocities only; positions come from the
    URDF), so the caller can combine sources. ``has_*_limits: false`` entries are skipped.
    """
    try:
        data = load_yaml(path)
    except ConfigError as err:
        raise JointError(str(err)) from err
    table = data.get("joint_limits")
    if not isinstance(table, dict):
        raise JointError(f"{path}: missing top-level 'joint_limits' mapping")
    out: dict[str, dict[str, float]] = {}
    for name in joints:
        entry = table.get(name)
        if entry is None:
            continue
        found: dict[str, float] = {}
        try:
            pos = _limit_entry(entry, "has_position_limits", ("min_position", "max_position"))
            vel = _limit_entry(entry, "has_velocity_limits", ("max_velocity",))
        except JointError as err:
            raise JointError(f"{path}: joint_limits.{name}.{err}") from err
        if pos is not None:
            found["lower"], found["upper"] = pos
        if vel is not None:
            found["max_velocity"] = vel[0]
        out[name] = found
    return out


def resolve_limits(joints: Sequence[str], *, position_min: Sequence[float] = (),
                   position_max: Sequence[float] = (), max_velocity: Sequence[float] = (),
                   from_file: dict[str, dict[str, float]] | None = None,
                   velocity_scale: float = 1.0) -> JointLimits:
    """Combine limits from parameters (lists in ``joints`` order) and a limits file.

    A non-empty parameter list wins for its quantity; otherwise each joint's value comes from
    ``from_file``. A joint left without a limit is an error naming the joint and the keys that
    could supply it: we never command a joint we cannot bound. ``velocity_scale`` (0, 1]
    scales the velocity limits (like MoveIt's default_velocity_scaling_factor).
    """
    joints = list(joints)
    from_file = from_file or {}
    cols: dict[str, list[float]] = {}
    for key, param, param_name in (("lower", position_min, "position_min"),
                                   ("upper", position_max, "position_max"),
                                   ("max_velocity", max_velocity, "max_velocity")):
        if len(param):
            if len(param) != len(joints):
                raise JointError(f"{param_name}: {len(param)} values for {len(joints)} joints {joints}")
            cols[key] = [float(x) for x in param]
            continue
        values = []
        for name in joints:
            if key not in from_file.get(name, {}):
                raise JointError(f"joint '{name}': no {key} limit (set parameter '{param_name}' or give it "
                                 f"in joint_limits_yaml)")
            values.append(from_file[name][key])
        cols[key] = values
    if not (0.0 < velocity_scale <= 1.0):
        raise JointError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
    return JointLimits(tuple(joints), np.array(cols["lower"]), np.array(cols["upper"]),
                       np.array(cols["max_velocity"]) * velocity_scale)


@dataclasses.dataclass(frozen=True)
class JointReading:
    """Measured positions of the wanted joints, in the wanted order.

    ``positions`` holds NaN where a joint is missing or its measurements conflict; ``problem``
    is None when every wanted joint is present once (or repeated with the same value) and
    finite, else a short reason naming the joints (for status/diagnostics).
    """

    positions: np.ndarray  # (J,) float64
    missing: tuple[str, ...]
    nonfinite: tuple[str, ...]
    conflicting: tuple[str, ...] = ()  # named more than once with different values

    @property
    def ok(self) -> bool:
        return not self.missing and not self.nonfinite and not self.conflicting

    @property
    def problem(self) -> str | None:
        parts = []
        if self.missing:
            parts.append(f"joint_states lacks joints {list(self.missing)}")
        if self.nonfinite:
            parts.append(f"joint_states has NaN/inf position for {list(self.nonfinite)}")
        if self.conflicting:
            parts.append(f"joint_states names {list(self.conflicting)} more than once with different "
                         "positions (conflicting measurements)")
        return "; ".join(parts) or None


def read_joints(names: Sequence[str], positions: Sequence[float], wanted: Sequence[str]) -> JointReading:
    """Pick ``wanted`` joints out of a JointState's (names, positions), by name.

    Extra joints are ignored. A name listed without a position (a malformed message with a
    shorter position array) counts as missing. A wanted joint named twice with different
    values is *conflicting*: two measurements of one joint cannot both be true, and taking
    either would make the trajectory's velocity bound hold relative to a possibly wrong
    position (a jump of the difference in one period). The reading is then not ok (the node
    holds with a FAULT). Repeats with the identical value are the same measurement and pass.
    """
    wanted_set = set(wanted)
    seen: dict[str, list[float]] = {}
    for i, name in enumerate(names):
        if i < len(positions) and name in wanted_set:
            seen.setdefault(name, []).append(float(positions[i]))
    out = np.full(len(wanted), np.nan, dtype=np.float64)
    missing, nonfinite, conflicting = [], [], []
    for j, name in enumerate(wanted):
        values = seen.get(name)
        if not values:
            missing.append(name)
            continue
        if any(not (v == values[0]) for v in values[1:]):  # NaN != NaN: a NaN repeat conflicts too
            conflicting.append(name)
            continue
        value = values[0]
        if not math.isfinite(value):
            nonfinite.append(name)
            continue
        out[j] = value
    return JointReading(out, tuple(missing), tuple(nonfinite), tuple(conflicting))


def permutation(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Index array ``p`` with ``target[k] == source[p[k]]``; both lists must hold the same names."""
    if sorted(source) != sorted(target) or len(set(source)) != len(source):
        raise JointError(f"joint lists differ: {list(source)} vs {list(target)}")
    where = {name: i for i, name in enumerate(source)}
    return np.array([where[name] for name in target], dtype=np.intp)


# A measurement this far outside the position range (as a fraction of the range) is not encoder
# noise or overshoot but a broken reading (a unit mix-up, an uninitialised driver value, 1e300).
IMPLAUSIBLE_MARGIN = 0.1


def implausible_joints(positions: np.ndarray, limits: JointLimits,
                       margin: float = IMPLAUSIBLE_MARGIN) -> list[str]:
    """Names of joints measured more than ``margin * (upper - lower)`` outside their limits.

    Why it matters: the node holds "the last good measured position" and feeds measurements to
    the policy. A reading of 1e300 rad is finite, so it would pass a NaN check; held, it is
    clamped to a limit (a jump of the whole range in one period); fed to the policy, it
    overflows the normaliser and leaves inf in the rolling memory for the next W steps.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    slack = margin * (limits.upper - limits.lower)
    bad = (positions < limits.lower - slack) | (positions > limits.upper + slack)
    return [name for name, b in zip(limits.names, bad) if b]

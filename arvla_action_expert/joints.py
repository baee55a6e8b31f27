"""Joints by name: the controller's joint list, joint limits, and reading measured positions.

ROS-free (no rclpy import) so every rule here is unit-tested without a ROS graph. The action
expert node only converts messages into the plain lists/arrays these functions take.

The robot's own files are read as ROS reads them: a ros2_controllers.yaml (``$(var NAME)``
substitutions resolved from node parameters), a MoveIt joint_limits.yaml in every form MoveIt
loads, and the URDF (robot_description) through urdf_parser_py (urdfdom_py). Limits combine
with the precedence parameters > joint_limits.yaml > URDF, each value with its source
(``resolve_joint_limits``); ``arvla robot-config`` prints exactly what the node resolves.

Why by name: ``sensor_msgs/JointState`` gives no order guarantee (joint_state_broadcaster
publishes in interface order, a bag from another robot driver in another), and the same topic
often carries extra joints (gripper fingers, a mobile base). The trajectory we send must name
exactly the joints of the controller, so every lookup goes through names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from arvla_base.config import ConfigError, load_yaml


class JointError(ValueError):
    """A joint list or joint limits file is unusable; the message names the joint and key."""


@dataclasses.dataclass(frozen=True)
class JointLimits:
    """Per-joint position, velocity (and acceleration) limits, in the order of ``names``.

    Position limits are finite, ``lower < upper``, except for a *continuous* joint (URDF type
    ``continuous``, or ``angle_wraparound`` in a joint_limits.yaml): it turns without end, so its
    range is exactly (-inf, +inf) and it is marked in ``continuous`` -- never by accident (an
    infinite limit on a joint not marked continuous is refused: a clamp to +-inf is no clamp).
    Velocity limits (rad/s or m/s) are finite and > 0 for every joint, continuous or not: they
    bound each trajectory segment, and with them every output stays finite and bounded.
    ``max_acceleration``: > 0, inf where none is given (carried and reported; see README).
    """

    names: tuple[str, ...]
    lower: np.ndarray  # (J,) float64
    upper: np.ndarray  # (J,) float64
    max_velocity: np.ndarray  # (J,) float64
    continuous: Any = None  # (J,) bool; None = no continuous joint
    max_acceleration: Any = None  # (J,) float64, inf = no limit; None = none given

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise JointError("joint limits: no joints")
        if len(set(self.names)) != n:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise JointError(f"joint limits: duplicate joint names {dup}")
        defaults = {"continuous": np.zeros(n, dtype=bool), "max_acceleration": np.full(n, np.inf)}
        for key in ("lower", "upper", "max_velocity", "continuous", "max_acceleration"):
            value = getattr(self, key)
            if value is None:
                value = defaults[key]
            arr = np.asarray(value, dtype=bool if key == "continuous" else np.float64).reshape(-1).copy()
            if arr.shape != (n,):
                raise JointError(f"joint limits: {key} has {arr.size} values for {n} joints")
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        for i, name in enumerate(self.names):
            lo, hi, v, a = self.lower[i], self.upper[i], self.max_velocity[i], self.max_acceleration[i]
            if self.continuous[i]:
                if not (lo == -math.inf and hi == math.inf):
                    raise JointError(f"joint limits: {name}: a continuous joint has no position limits, "
                                     f"got [{lo}, {hi}]")
            elif not (math.isfinite(lo) and math.isfinite(hi)):
                raise JointError(f"joint limits: {name}: position limits must be finite, got [{lo}, {hi}] "
                                 "(only a joint marked continuous turns without limits)")
            elif not lo < hi:
                raise JointError(f"joint limits: {name}: lower {lo} must be < upper {hi}")
            if not (math.isfinite(v) and v > 0):
                raise JointError(f"joint limits: {name}: max_velocity must be finite and > 0, got {v}")
            if not (a > 0):  # inf = no limit; NaN, 0 and negative refused
                raise JointError(f"joint limits: {name}: max_acceleration must be > 0 (inf = none), got {a}")

    @property
    def dof(self) -> int:
        return len(self.names)

    def subset(self, names: Sequence[str]) -> JointLimits:
        """The limits of ``names`` (each one of ours), in that order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise JointError(f"joint limits: no limits for {missing} (have {list(self.names)})")
        idx = [self.names.index(n) for n in names]
        return JointLimits(tuple(names), self.lower[idx], self.upper[idx], self.max_velocity[idx],
                           self.continuous[idx], self.max_acceleration[idx])


# ---- launch-style substitutions in ros2_control / MoveIt files ------------------------------------

_SUBSTITUTION = re.compile(r"\$\(\s*([A-Za-z_-]+)\s*([^)]*)\)")


def substitute(text: str, variables: Mapping[str, str], where: str) -> str:
    """Resolve ``$(var NAME)`` in ``text`` from ``variables`` (node parameters, e.g. tf_prefix).

    The UR driver and others write joint names as ``$(var tf_prefix)shoulder_pan_joint`` and let
    the launch file expand them; read literally, the expert would wait for joints that never
    appear. Any other substitution (``$(env X)``, ``$(find-pkg-share P)``) or an unknown NAME is
    a JointError naming ``where`` (the file and key) and the parameter that would supply it.
    """

    def one(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2).strip()
        if kind != "var":
            raise JointError(f"{where}: substitution {m.group(0)!r} is not supported here (only $(var NAME), "
                             "resolved from the node's parameters); expand the file first")
        if arg not in variables:
            raise JointError(f"{where}: {m.group(0)!r} is not resolved: no value for '{arg}' (set parameter "
                             f"'{arg}' if it is tf_prefix, else add '{arg}=VALUE' to parameter 'yaml_vars')")
        return variables[arg]

    return _SUBSTITUTION.sub(one, text) if "$(" in text else text


# ---- ros2_controllers.yaml ------------------------------------------------------------------------

def _is_type(type_: str | None, class_suffix: str) -> bool:
    return bool(type_) and type_.rsplit("/", 1)[-1].endswith(class_suffix)  # type: ignore[union-attr]


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    """One controller of a ros2_controllers.yaml, substitutions resolved.

    ``type``: the plugin from its own ``type`` parameter or ``controller_manager``'s entry (None
    if the file does not say). ``joints``: its ``joints`` list, or ``[joint]`` for controllers that
    take one joint (GripperActionController).
    """

    name: str
    key: str  # the top-level key of its block (e.g. /**/arm_controller)
    type: str | None
    joints: tuple[str, ...]
    path: str

    @property
    def kind(self) -> str:
        """'trajectory' (any JointTrajectoryController, e.g. ur_controllers/ScaledJointTrajectoryController),
        'gripper_action' (GripperActionController: control_msgs/action/GripperCommand),
        'parallel_gripper_action', 'unknown' (no type in the file) or 'other'."""
        if self.type is None:
            return "unknown"
        if _is_type(self.type, "JointTrajectoryController"):
            return "trajectory"
        if self.type.startswith("parallel_gripper_action_controller/"):
            return "parallel_gripper_action"
        if _is_type(self.type, "GripperActionController"):
            return "gripper_action"
        return "other"


def _controller_type(data: Mapping[Any, Any], name: str, params: Mapping[str, Any]) -> Any:
    if "type" in params:
        return params["type"]
    for key, block in data.items():
        if isinstance(key, str) and key.rstrip("/").split("/")[-1] == "controller_manager" and isinstance(block, dict):
            entry = (block.get("ros__parameters") or {}).get(name)
            if isinstance(entry, dict) and "type" in entry:
                return entry["type"]
    return None


def controller_from_yaml(path: str | os.PathLike[str], controller_name: str,
                         variables: Mapping[str, str] | None = None) -> ControllerSpec:
    """Controller ``controller_name`` of a ros2_controllers.yaml file.

    Accepts the controller's block at top level under its plain name or a namespaced name
    (``/robot/arm_controller``, ``/**/arm_controller``), as ros2_control's param files do.
    ``$(var NAME)`` in its joint names and type are resolved from ``variables`` (``substitute``).
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
    key = candidates[0]
    block = data[key]
    params = block.get("ros__parameters") if isinstance(block, dict) else None
    if not isinstance(params, dict):
        raise JointError(f"{path}: {key}.ros__parameters is missing or not a mapping")
    variables = dict(variables or {})
    joints = params.get("joints")
    where = f"{path}: {key}.ros__parameters.joints"
    if joints is None and isinstance(params.get("joint"), str):  # GripperActionController: one joint
        joints, where = [params["joint"]], f"{path}: {key}.ros__parameters.joint"
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints):
        raise JointError(f"{where} must be a non-empty list of names, got {joints!r}")
    joints = [substitute(j, variables, f"{where}[{i}]") for i, j in enumerate(joints)]
    if len(set(joints)) != len(joints):
        raise JointError(f"{where} has duplicates: {joints}")
    type_ = _controller_type(data, controller_name, params)
    if type_ is not None:
        if not isinstance(type_, str):
            raise JointError(f"{path}: type of controller '{controller_name}' must be a string, got {type_!r}")
        type_ = substitute(type_, variables, f"{path}: type of controller '{controller_name}'")
    return ControllerSpec(controller_name, key, type_, tuple(joints), str(path))


def controller_joints_from_yaml(path: str | os.PathLike[str], controller_name: str,
                                variables: Mapping[str, str] | None = None) -> list[str]:
    """The ``joints`` list of ``controller_name`` in a ros2_controllers.yaml file (see controller_from_yaml)."""
    return list(controller_from_yaml(path, controller_name, variables).joints)


# ---- MoveIt / ros2_control joint_limits.yaml -----------------------------------------------------

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


@dataclasses.dataclass(frozen=True)
class JointLimitsFile:
    """A joint_limits.yaml as MoveIt loads it: the ``joint_limits`` table and its scaling factors.

    ``where``: the key path the table was found under (for messages and the provenance table).
    """

    path: str
    where: str
    table: dict[str, Any]
    default_velocity_scaling_factor: float | None = None
    default_acceleration_scaling_factor: float | None = None


def _limits_tables(data: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, Mapping[Any, Any]]]:
    """Every mapping that holds a ``joint_limits`` table, in the forms MoveIt loads: at top level,
    under ``robot_description_planning``, and either of them under ``<node>: ros__parameters``."""
    found: list[tuple[str, Mapping[Any, Any]]] = []
    if isinstance(data.get("joint_limits"), dict):
        found.append((prefix + "joint_limits", data))
    planning = data.get("robot_description_planning")
    if isinstance(planning, dict) and isinstance(planning.get("joint_limits"), dict):
        found.append((prefix + "robot_description_planning.joint_limits", planning))
    if not prefix:
        for key, block in data.items():
            if isinstance(block, dict) and isinstance(block.get("ros__parameters"), dict):
                found += _limits_tables(block["ros__parameters"], f"{key}.ros__parameters.")
    return found


def read_joint_limits_yaml(path: str | os.PathLike[str]) -> JointLimitsFile:
    """Read a MoveIt-style joint_limits.yaml in any of the forms MoveIt itself loads."""
    try:
        data = load_yaml(path)
    except ConfigError as err:
        raise JointError(str(err)) from err
    tables = _limits_tables(data)
    if not tables:
        raise JointError(f"{path}: no 'joint_limits' mapping (looked at top level, under "
                         "'robot_description_planning', and under '<node>: ros__parameters')")
    if len(tables) > 1:
        raise JointError(f"{path}: more than one 'joint_limits' mapping: {[w for w, _ in tables]}")
    where, holder = tables[0]
    factors: dict[str, float | None] = {}
    for key in ("default_velocity_scaling_factor", "default_acceleration_scaling_factor"):
        value = holder.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.0 < float(value) <= 1.0):
            raise JointError(f"{path}: {where.rsplit('joint_limits', 1)[0]}{key} must be a number in (0, 1], "
                             f"got {value!r}")
        factors[key] = None if value is None else float(value)
    return JointLimitsFile(str(path), where, dict(holder["joint_limits"]), **factors)


def _file_entry(limits_file: JointLimitsFile, name: str, tf_prefix: str) -> tuple[str, Any] | None:
    """(key, entry) for joint ``name``; a file written without the tf_prefix matches the bare name."""
    table = limits_file.table
    if name in table:
        return name, table[name]
    if tf_prefix and name.startswith(tf_prefix) and name[len(tf_prefix):] in table:
        return name[len(tf_prefix):], table[name[len(tf_prefix):]]
    return None


def limits_from_joint_limits_file(limits_file: JointLimitsFile, joints: Sequence[str], *, tf_prefix: str = ""
                                  ) -> dict[str, dict[str, Any]]:
    """Limits the file gives for ``joints``: ``{joint: {"lower", "upper", "continuous", "max_velocity",
    "max_acceleration"}}`` with only what it actually gives (MoveIt files often carry velocities
    only; positions come from the URDF), so the caller can combine sources.
    ``has_*_limits: false`` entries are skipped; ``angle_wraparound: true`` (ros2_control's
    joint_limits) marks a continuous joint."""
    out: dict[str, dict[str, Any]] = {}
    for name in joints:
        hit = _file_entry(limits_file, name, tf_prefix)
        if hit is None:
            continue
        key, entry = hit
        found: dict[str, Any] = {}
        try:
            pos = _limit_entry(entry, "has_position_limits", ("min_position", "max_position"))
            vel = _limit_entry(entry, "has_velocity_limits", ("max_velocity",))
            acc = _limit_entry(entry, "has_acceleration_limits", ("max_acceleration",))
        except JointError as err:
            raise JointError(f"{limits_file.path}: {limits_file.where}.{key}.{err}") from err
        if isinstance(entry, dict) and entry.get("angle_wraparound") is True:
            found["continuous"] = True
        elif pos is not None:
            found["lower"], found["upper"] = pos
        if vel is not None:
            found["max_velocity"] = vel[0]
        if acc is not None:
            found["max_acceleration"] = acc[0]
        out[name] = found
    return out


def limits_from_joint_limits_yaml(path: str | os.PathLike[str], joints: Sequence[str], *, tf_prefix: str = ""
                                  ) -> dict[str, dict[str, Any]]:
    """``limits_from_joint_limits_file`` of the file at ``path``."""
    return limits_from_joint_limits_file(read_joint_limits_yaml(path), joints, tf_prefix=tf_prefix)


# ---- URDF (robot_description) ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str  # revolute | continuous | prismatic | fixed | floating | planar
    lower: float | None  # None: no <limit> (or a continuous joint)
    upper: float | None
    max_velocity: float | None
    soft: bool = False  # lower/upper are the <safety_controller> soft limits
    mimic: tuple[str, float, float] | None = None  # (joint, multiplier, offset)


@dataclasses.dataclass(frozen=True)
class UrdfRobot:
    """The joints of a robot_description, parsed by urdf_parser_py (urdfdom_py), as plain values.

    ``origin`` says where the text came from (a file, the parameter, the topic) for messages.
    """

    name: str
    origin: str
    joints: dict[str, UrdfJoint]

    @classmethod
    def from_xml(cls, xml: str | bytes, origin: str) -> UrdfRobot:
        """Parse URDF text (xacro-expanded). JointError naming ``origin`` on anything unusable."""
        from lxml import etree
        from urdf_parser_py import urdf as urdf_model
        from urdf_parser_py.xml_reflection import core as xml_core

        data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
        if not data.strip():
            raise JointError(f"robot_description from {origin} is empty")
        try:
            root = etree.fromstring(data)
        except etree.XMLSyntaxError as err:
            raise JointError(f"robot_description from {origin} is not valid XML: {err}") from err
        if root.tag != "robot":
            raise JointError(f"robot_description from {origin}: root element is <{root.tag}>, not <robot>")
        if any(isinstance(k, str) and "xacro" in (v or "") for k, v in root.nsmap.items()) or \
                root.find(".//{*}include") is not None:
            raise JointError(f"robot_description from {origin} is an unexpanded xacro file: expand it first "
                             "(xacro robot.urdf.xacro > robot.urdf) or read the /robot_description topic")
        unknown: list[str] = []  # <ros2_control>, <gazebo>...: not ours to judge
        saved, xml_core.on_error = xml_core.on_error, unknown.append
        try:
            robot = urdf_model.URDF.from_xml_string(data)
        except (xml_core.ParseError, AssertionError, ValueError) as err:
            raise JointError(f"robot_description from {origin}: {err}") from err
        finally:
            xml_core.on_error = saved
        joints: dict[str, UrdfJoint] = {}
        for j in robot.joints:
            limit, safety = j.limit, j.safety_controller
            lower = upper = velocity = None
            soft = False
            if limit is not None:
                velocity = None if limit.velocity is None else float(limit.velocity)
                if j.type in ("revolute", "prismatic"):
                    lower, upper = float(limit.lower), float(limit.upper)
                    if safety is not None and safety.soft_lower_limit < safety.soft_upper_limit:
                        # as MoveIt's RobotModel does: the soft limits narrow the hard ones
                        lo, hi = max(lower, float(safety.soft_lower_limit)), min(upper, float(safety.soft_upper_limit))
                        soft = (lo, hi) != (lower, upper)
                        lower, upper = lo, hi
            mimic = None
            if j.mimic is not None:
                mimic = (str(j.mimic.joint), 1.0 if j.mimic.multiplier is None else float(j.mimic.multiplier),
                         0.0 if j.mimic.offset is None else float(j.mimic.offset))
            joints[j.name] = UrdfJoint(j.name, str(j.type), lower, upper, velocity, soft, mimic)
        return cls(str(robot.name), origin, joints)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> UrdfRobot:
        p = pathlib.Path(path)
        if not p.is_file():
            raise JointError(f"URDF file not found: {p}")
        return cls.from_xml(p.read_bytes(), f"file {p}")

    def joint(self, name: str) -> UrdfJoint:
        if name not in self.joints:
            prefixed = [j for j in self.joints if j.endswith(name) and j != name]
            hint = (f"; it has '{prefixed[0]}': is parameter tf_prefix '{prefixed[0][:-len(name)]}' missing?"
                    if prefixed else "")
            raise JointError(f"joint '{name}' is not in the robot_description from {self.origin} "
                             f"(robot '{self.name}' has {sorted(self.joints)}){hint}")
        return self.joints[name]

    def check_commandable(self, name: str) -> None:
        """A commanded joint must exist, move (revolute/prismatic/continuous) and follow no other."""
        j = self.joint(name)
        if j.type not in ("revolute", "prismatic", "continuous"):
            raise JointError(f"joint '{name}' is a {j.type} joint in the robot_description from {self.origin}: "
                             "it cannot be commanded")
        if j.mimic is not None:
            raise JointError(f"joint '{name}' mimics '{j.mimic[0]}' in the robot_description from {self.origin}: "
                             "it follows that joint and is not commanded on its own (remove it from the joints, "
                             f"command '{j.mimic[0]}')")

    def followers(self, name: str) -> list[tuple[str, float, float]]:
        """Joints that mimic ``name``: (joint, multiplier, offset)."""
        return [(j.name, j.mimic[1], j.mimic[2]) for j in self.joints.values()
                if j.mimic is not None and j.mimic[0] == name]

    def limits_for(self, joints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What the URDF gives for ``joints``, in the shape of ``limits_from_joint_limits_file``."""
        out: dict[str, dict[str, Any]] = {}
        for name in joints:
            j = self.joints.get(name)
            if j is None:
                continue
            found: dict[str, Any] = {}
            if j.type == "continuous":
                found["continuous"] = True
            elif j.lower is not None and j.upper is not None:
                if not j.lower < j.upper:
                    raise JointError(f"joint '{name}' ({j.type}) in the robot_description from {self.origin} has "
                                     f"no position range: <limit lower={j.lower:g} upper={j.upper:g}>")
                found["lower"], found["upper"] = j.lower, j.upper
                if j.soft:
                    found["soft"] = True
            if j.max_velocity is not None and j.max_velocity > 0:
                found["max_velocity"] = j.max_velocity
            out[name] = found
        return out


# ---- combining the sources ------------------------------------------------------------------------

QUANTITIES = ("lower", "upper", "max_velocity", "max_acceleration")


@dataclasses.dataclass(frozen=True)
class LimitsResolution:
    """Joint limits and where each value came from (the precedence is parameters >
    joint_limits.yaml > URDF, per joint and per quantity).

    ``limits``: what the node enforces (velocities and accelerations already scaled).
    ``sources[joint][quantity]``: a short label ("parameter position_min", "joint_limits.yaml",
    "URDF", "URDF continuous", "none"); ``raw_*``: velocities/accelerations before scaling.
    ``notes``: things worth a warning (a file value wider than the URDF's, a tf_prefix stripped).
    """

    limits: JointLimits
    sources: dict[str, dict[str, str]]
    raw_velocity: np.ndarray
    raw_acceleration: np.ndarray
    velocity_scale: float
    velocity_scale_source: str
    acceleration_scale: float
    acceleration_scale_source: str
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """One line per joint for the log: value, unit-free, and its source."""
        lines = [f"joint limits (parameters > joint_limits.yaml > URDF; velocity x {self.velocity_scale:g} from "
                 f"{self.velocity_scale_source}):"]
        lim = self.limits
        for i, name in enumerate(lim.names):
            src = self.sources[name]
            if lim.continuous[i]:
                pos = f"continuous (no position limits) [{src['lower']}]"
            else:
                where = src["lower"] if src["lower"] == src["upper"] else f"{src['lower']} / {src['upper']}"
                pos = f"[{lim.lower[i]:g}, {lim.upper[i]:g}] [{where}]"
            acc = ("" if not math.isfinite(lim.max_acceleration[i]) else
                   f", acceleration {lim.max_acceleration[i]:g} [{src['max_acceleration']}]")
            lines.append(f"  {name}: position {pos}, velocity {lim.max_velocity[i]:g} [{src['max_velocity']}]{acc}")
        lines += [f"  note: {n}" for n in self.notes]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no inf: an unbounded value is null)."""
        lim = self.limits

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        joints = {}
        for i, name in enumerate(lim.names):
            joints[name] = {
                "continuous": bool(lim.continuous[i]), "lower": num(lim.lower[i]), "upper": num(lim.upper[i]),
                "max_velocity": float(lim.max_velocity[i]), "max_velocity_unscaled": float(self.raw_velocity[i]),
                "max_acceleration": num(lim.max_acceleration[i]),
                "max_acceleration_unscaled": num(self.raw_acceleration[i]),
                "sources": dict(self.sources[name])}
        return {"joints": joints,
                "velocity_scale": {"value": self.velocity_scale, "source": self.velocity_scale_source},
                "acceleration_scale": {"value": self.acceleration_scale, "source": self.acceleration_scale_source},
                "notes": list(self.notes)}


LimitTable = Mapping[str, Mapping[str, Any]]


def resolve_joint_limits(joints: Sequence[str], *, params: LimitTable | None = None,
                         yaml: LimitTable | None = None, urdf: LimitTable | None = None,
                         labels: Mapping[str, str] | None = None,
                         velocity_scale: float | None = None, velocity_scale_source: str = "parameter velocity_scale",
                         yaml_velocity_scale: float | None = None, yaml_acceleration_scale: float | None = None,
                         missing_hint: str = "") -> LimitsResolution:
    """Combine per-joint limits from parameters, a joint_limits.yaml and a URDF.

    Each table maps joint -> {"lower", "upper", "continuous", "max_velocity", "max_acceleration"}
    with what that source gives. Per joint and quantity the first source that has it wins:
    parameters > joint_limits.yaml > URDF. Position limits come as one pair: lower and upper from
    a continuous source are (-inf, inf). A joint left without position or velocity limits is an
    error naming the joint and the places that could supply it (``missing_hint``): we never
    command a joint we cannot bound. Acceleration is optional (inf = none).

    Velocity scale: ``velocity_scale`` (a parameter; None = not set) > the file's
    ``default_velocity_scaling_factor`` > 1. Acceleration scale: the file's
    ``default_acceleration_scaling_factor`` > 1.
    """
    joints = list(joints)
    names = {"params": "parameter", "yaml": "joint_limits.yaml", "urdf": "URDF", **(labels or {})}
    ordered = [(names["params"], params or {}), (names["yaml"], yaml or {}), (names["urdf"], urdf or {})]
    cols: dict[str, list[float]] = {k: [] for k in QUANTITIES}
    continuous: list[bool] = []
    sources: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for name in joints:
        src: dict[str, str] = {}
        pos: dict[str, tuple[float, str]] = {}
        cont_source = None
        for label, table in ordered:
            entry = table.get(name, {})
            if entry.get("continuous") and not pos:
                cont_source = label
                break
            for key in ("lower", "upper"):
                if key in entry and key not in pos:
                    pos[key] = (float(entry[key]), label + (" safety_controller" if entry.get("soft") else ""))
            if len(pos) == 2:
                break
        if cont_source is not None:
            continuous.append(True)
            cols["lower"].append(-math.inf)
            cols["upper"].append(math.inf)
            src["lower"] = src["upper"] = f"{cont_source} continuous"
        else:
            if len(pos) != 2:
                gone = [k for k in ("lower", "upper") if k not in pos]
                raise JointError(f"joint '{name}': no {' and '.join(gone)} position limit{missing_hint}")
            continuous.append(False)
            for key in ("lower", "upper"):
                cols[key].append(pos[key][0])
                src[key] = pos[key][1]
        for key in ("max_velocity", "max_acceleration"):
            hit = next(((float(t[name][key]), label) for label, t in ordered if key in t.get(name, {})), None)
            if hit is None:
                if key == "max_velocity":
                    raise JointError(f"joint '{name}': no max_velocity limit{missing_hint}")
                hit = (math.inf, "none")
            cols[key].append(hit[0])
            src[key] = hit[1]
        sources[name] = src
        # A value that wins over the URDF but is wider than it: legal (the precedence says so) but
        # worth a warning: the URDF usually states the hardware's limits.
        u = (urdf or {}).get(name, {})
        i = len(continuous) - 1
        if not continuous[i] and "lower" in u and (cols["lower"][i] < u["lower"] or cols["upper"][i] > u["upper"]):
            notes.append(f"{name}: position [{cols['lower'][i]:g}, {cols['upper'][i]:g}] ({src['lower']}) is wider "
                         f"than the URDF's [{u['lower']:g}, {u['upper']:g}]")
        if "max_velocity" in u and cols["max_velocity"][i] > u["max_velocity"]:
            notes.append(f"{name}: velocity {cols['max_velocity'][i]:g} ({src['max_velocity']}) is above the URDF's "
                         f"{u['max_velocity']:g}")
    if velocity_scale is not None:
        v_scale, v_source = float(velocity_scale), velocity_scale_source
    elif yaml_velocity_scale is not None:
        v_scale, v_source = float(yaml_velocity_scale), f"{names['yaml']} default_velocity_scaling_factor"
    else:
        v_scale, v_source = 1.0, "default"
    if not 0.0 < v_scale <= 1.0:
        raise JointError(f"velocity_scale must be in (0, 1], got {v_scale}")
    a_scale, a_source = ((float(yaml_acceleration_scale), f"{names['yaml']} default_acceleration_scaling_factor")
                         if yaml_acceleration_scale is not None else (1.0, "default"))
    raw_v, raw_a = np.array(cols["max_velocity"]), np.array(cols["max_acceleration"])
    limits = JointLimits(tuple(joints), np.array(cols["lower"]), np.array(cols["upper"]), raw_v * v_scale,
                         np.array(continuous, dtype=bool), raw_a * a_scale)
    return LimitsResolution(limits, sources, raw_v, raw_a, v_scale, v_source, a_scale, a_source, tuple(notes))


def params_table(joints: Sequence[str], **lists: Sequence[float]) -> dict[str, dict[str, float]]:
    """Per-joint view of list parameters (``position_min=[...]`` in ``joints`` order; empty = not set)."""
    keys = {"position_min": "lower", "position_max": "upper", "max_velocity": "max_velocity",
            "max_acceleration": "max_acceleration"}
    table: dict[str, dict[str, float]] = {name: {} for name in joints}
    for param_name, values in lists.items():
        if not len(values):
            continue
        if len(values) != len(joints):
            raise JointError(f"{param_name}: {len(values)} values for {len(joints)} joints {list(joints)}")
        for name, v in zip(joints, values):
            table[name][keys[param_name]] = float(v)
    return table


def resolve_limits(joints: Sequence[str], *, position_min: Sequence[float] = (),
                   position_max: Sequence[float] = (), max_velocity: Sequence[float] = (),
                   from_file: dict[str, dict[str, Any]] | None = None,
                   velocity_scale: float = 1.0) -> JointLimits:
    """Combine limits from parameters (lists in ``joints`` order) and a limits file.

    A non-empty parameter list wins for its quantity; otherwise each joint's value comes from
    ``from_file``. A joint left without a limit is an error naming the joint and the keys that
    could supply it: we never command a joint we cannot bound. ``velocity_scale`` (0, 1]
    scales the velocity limits (like MoveIt's default_velocity_scaling_factor).
    """
    params = params_table(joints, position_min=position_min, position_max=position_max, max_velocity=max_velocity)
    return resolve_joint_limits(
        joints, params=params, yaml=from_file, velocity_scale=velocity_scale,
        missing_hint=" (set parameters 'position_min'/'position_max'/'max_velocity' or give it in "
                     "joint_limits_yaml)").limits


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
# A continuous joint has no range to compare with: a reading beyond this many radians (~160 turns
# from zero) is taken as broken. Fed to the policy it would overflow the normaliser all the same.
CONTINUOUS_PLAUSIBLE_RAD = 1000.0


def implausible_joints(positions: np.ndarray, limits: JointLimits,
                       margin: float = IMPLAUSIBLE_MARGIN) -> list[str]:
    """Names of joints measured more than ``margin * (upper - lower)`` outside their limits
    (continuous joints: more than ``CONTINUOUS_PLAUSIBLE_RAD`` from zero).

    Why it matters: the node holds "the last good measured position" and feeds measurements to
    the policy. A reading of 1e300 rad is finite, so it would pass a NaN check; held, it is
    clamped to a limit (a jump of the whole range in one period); fed to the policy, it
    overflows the normaliser and leaves inf in the rolling memory for the next W steps.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    bounded = ~limits.continuous
    width = np.where(bounded, limits.upper - limits.lower, 0.0)  # inf - -inf = inf, never used
    lo = np.where(bounded, limits.lower - margin * width, -CONTINUOUS_PLAUSIBLE_RAD)
    hi = np.where(bounded, limits.upper + margin * width, CONTINUOUS_PLAUSIBLE_RAD)
    bad = (positions < lo) | (positions > hi)
    return [name for name, b in zip(limits.names, bad) if b]

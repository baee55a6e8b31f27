"""Configuration of the action expert node: one dataclass, one field per ROS parameter.

ROS-free. The node declares one parameter per field (name, type, default and the ``help`` text
below as its description), reads them all once, and builds ``ExpertNodeConfig`` through
``arvla_base.config.from_dict`` so a bad value fails at start with an error naming the key.
``config/action_expert.yaml`` lists every field (a test keeps the two in sync).

``ExpertNodeConfig.resolve_robot`` turns the parameters and the robot's own files
(ros2_controllers.yaml, MoveIt joint_limits.yaml, the URDF) into a ``RobotSetup``: the joints,
the gripper output and every limit with its source. The node and ``arvla robot-config`` both
call it, so the dry run prints what the node enforces.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional

from arvla_base.config import ConfigError, from_dict, param_field, require
from arvla_action_expert.gripper import GRIPPER_COMMANDS, GripperSpec
from arvla_action_expert.joints import (ControllerSpec, JointError, JointLimits, JointLimitsFile, LimitsResolution,
                                        UrdfRobot, controller_from_yaml, limits_from_joint_limits_file, params_table,
                                        read_joint_limits_yaml, resolve_joint_limits)

NODE_NAME = "arvla_action_expert"


_p = param_field  # short: one per field below


INFERENCE_MODES = ("torch", "int8", "onnx", "onnx_int8", "cuda_graph", "cuda_graph_bf16")
TRAJECTORY_TIMINGS = ("seamless", "tick", "arrival")


@dataclasses.dataclass
class ExpertNodeConfig:
    """Every parameter of ``arvla_action_expert`` (see each field's help)."""

    checkpoint: str = _p("", "Path of the trained expert checkpoint (ExpertPolicy.from_checkpoint). "
                             "Required: the node refuses to start without a loadable one.")
    device: str = _p("cpu", "torch device for the policy ('cpu', 'cuda', 'cuda:0').")
    torch_threads: int = _p(1, "torch intra-op threads (1 is fastest for one small AR step; 0 = leave "
                               "torch's default).")
    inference: str = _p("torch", "How one AR step runs: 'torch' (fp32, exact), 'int8' (torch dynamic int8 "
                                 "Linear weights, ~3x faster on CPU), 'onnx' (ONNX Runtime fp32) or "
                                 "'onnx_int8' (ONNX Runtime, int8 weights: fastest on CPU; see "
                                 "bench/expert_step.py for speed and agreement with fp32), "
                                 "'cuda_graph' (device cuda: the step replayed as CUDA graphs, fp32, "
                                 "equal to 'torch') or 'cuda_graph_bf16' (the same in bfloat16; "
                                 "bench/gpu.py).")
    control_rate: float = _p(20.0, "Control tick rate in Hz; must match the checkpoint's control_rate_hz "
                                   "(one AR step = one period). The timer runs on the node clock (use_sim_time).")
    lookahead_steps: int = _p(3, "AR steps published per tick as trajectory points (row 0 is committed to "
                                 "memory, the rest is lookahead that covers latency).")
    trajectory_timing: str = _p("seamless", "How each tick's trajectory is timed. 'seamless': stamped with "
                                             "the tick time, it starts with the previous trajectory's point the "
                                             "controller is moving towards (or, with none, a stop at the measured "
                                             "position) and the AR rows follow one period later: the executed "
                                             "motion does not depend on when inside the tick the step finishes. "
                                             "'tick': stamped with the tick time, row k at tick + (k+1) periods. "
                                             "'arrival': stamp 0, the controller starts the plan when it arrives "
                                             "(the step latency shifts every plan; for a controller on a host "
                                             "without a synchronised clock).")
    ensemble_steps: int = _p(1, "Multi-token ensembling: execute for each step the mean of what the last "
                                "ensemble_steps AR tokens predicted for it (a model trained with "
                                "predict_steps K predicts K steps per token). 1 = plain AR; at most K.")
    ensemble_m: float = _p(0.0, "Weights of the ensembled predictions (ensemble_steps > 1), ACT's temporal "
                                "ensembling: exp(-m * i), i = 0 the oldest. 0 = the plain mean; > 0 leans on "
                                "older predictions, < 0 on newer ones.")
    controller_name: str = _p("arm_controller", "joint_trajectory_controller (or any JointTrajectoryController "
                                                "type, e.g. scaled_joint_trajectory_controller) name: commands go "
                                                "to <controller_name>/joint_trajectory, relative to the node's "
                                                "namespace.")
    joints: list[str] = _p([], "Joint names of the controller, in command order. Empty: read them from "
                               "controllers_yaml.")
    controllers_yaml: str = _p("", "ros2_controllers.yaml path; the joints list of controller_name is used "
                                   "when 'joints' is empty ($(var NAME) resolved from tf_prefix / yaml_vars).")
    tf_prefix: str = _p("", "Value of $(var tf_prefix) in controllers_yaml (the UR driver's joint name prefix, "
                            "e.g. 'left_'); a joint_limits_yaml written without the prefix still matches.")
    yaml_vars: list[str] = _p([], "Values of other $(var NAME) substitutions in controllers_yaml, as 'NAME=VALUE'.")
    joint_limits_yaml: str = _p("", "MoveIt joint_limits.yaml path (plain 'joint_limits:' or under "
                                    "'robot_description_planning:'); supplies the limits the list parameters "
                                    "below leave open, and its default_velocity_scaling_factor.")
    robot_description: str = _p("", "URDF text (robot_state_publisher's parameter): position and velocity "
                                    "limits the parameters and joint_limits_yaml leave open, continuous and "
                                    "mimic joints.")
    urdf_file: str = _p("", "URDF file (xacro-expanded) read like robot_description, for offline use; used when "
                            "robot_description is empty.")
    robot_description_topic: str = _p("robot_description", "std_msgs/String topic (transient local, published "
                                                           "by robot_state_publisher) the URDF is read from when "
                                                           "limits are still missing and neither "
                                                           "robot_description nor urdf_file is set: the node "
                                                           "waits for it. Relative to the namespace. '' = never.")
    position_min: list[float] = _p([], "Lower position limit per joint (order of 'joints', then the gripper "
                                       "joint); empty: from joint_limits_yaml / the URDF.")
    position_max: list[float] = _p([], "Upper position limit per joint; empty: from joint_limits_yaml / the URDF.")
    max_velocity: list[float] = _p([], "Velocity limit per joint (rad/s or m/s); empty: from joint_limits_yaml / "
                                       "the URDF.")
    max_acceleration: list[float] = _p([], "Acceleration limit per joint (reported with the limits); empty: from "
                                           "joint_limits_yaml, else none.")
    velocity_scale: float = _p(0.0, "Scale (0, 1] applied to the velocity limits; 0 = joint_limits_yaml's "
                                    "default_velocity_scaling_factor, else 1.")
    gripper_controller: str = _p("", "A gripper on its own controller: its name (empty = none; the gripper, if "
                                     "any, is one of 'joints'). The policy's gripper dimension goes there.")
    gripper_joint: str = _p("", "The gripper's joint (policy dimension, joint_states name); empty: the "
                                "gripper controller's joint in controllers_yaml.")
    gripper_command: str = _p("auto", "How the gripper is commanded: 'gripper_action' "
                                      "(control_msgs/action/GripperCommand, GripperActionController), "
                                      "'joint_trajectory' (a second JointTrajectoryController) or 'auto' (from "
                                      "the controller's type in controllers_yaml).")
    gripper_action: str = _p("", "GripperCommand action name; empty: <gripper_controller>/gripper_cmd.")
    gripper_max_effort: float = _p(0.0, "max_effort of each GripperCommand goal (controller-specific units).")
    gripper_rate: float = _p(5.0, "Most gripper goals per second (a goal preempts the last one).")
    gripper_deadband: float = _p(0.001, "A new gripper goal only when the target moved more than this "
                                        "(joint units) since the last one.")
    max_staleness: int = _p(10, "Largest prefix staleness (control steps) the expert acts on; beyond it, hold.")
    future_tolerance: int = _p(0, "Prefixes up to this many steps in the future are accepted (clock skew "
                                  "between hosts); beyond it they are rejected and counted.")
    allow_action_only: bool = _p(False, "Without any prefix yet, run action-only (stage-1 kinematic syntax) "
                                        "instead of waiting.")
    joint_state_timeout: float = _p(0.5, "Seconds (node clock) after which the last /joint_states is stale -> hold.")
    enabled_at_start: bool = _p(True, "Start enabled (publishing). /arvla/enable switches it at run time.")
    diagnostics_period: float = _p(1.0, "Seconds between /diagnostics messages (also sent on every state "
                                        "change); 0 = every tick.")
    # Names are relative: under a namespace (namespace:=left) they resolve inside it, so two arms
    # run side by side in one ROS graph; in the root namespace they are /arvla/vl_prefix etc.
    prefix_topic: str = _p("arvla/vl_prefix", "arvla_msgs/VLPrefix input topic.")
    joint_states_topic: str = _p("joint_states", "sensor_msgs/JointState input topic.")
    status_topic: str = _p("arvla/expert_status", "arvla_msgs/ExpertStatus output topic (every tick).")
    reset_service: str = _p("arvla/reset_memory", "arvla_msgs/ResetMemory service name.")
    enable_service: str = _p("arvla/enable", "std_srvs/SetBool service name (false = publish nothing).")

    def __post_init__(self) -> None:
        self.checkpoint = expand_path(self.checkpoint)
        self.controllers_yaml = expand_path(self.controllers_yaml)
        self.joint_limits_yaml = expand_path(self.joint_limits_yaml)
        self.urdf_file = expand_path(self.urdf_file)
        require(self.torch_threads >= 0, "torch_threads", self.torch_threads, "must be >= 0")
        require(self.inference in INFERENCE_MODES, "inference", self.inference,
                f"must be one of {list(INFERENCE_MODES)}")
        require(0.0 < self.control_rate <= 1000.0, "control_rate", self.control_rate, "must be in (0, 1000] Hz")
        require(self.trajectory_timing in TRAJECTORY_TIMINGS, "trajectory_timing", self.trajectory_timing,
                f"must be one of {list(TRAJECTORY_TIMINGS)}")
        require(self.ensemble_steps >= 1, "ensemble_steps", self.ensemble_steps, "must be >= 1")
        require(math.isfinite(self.ensemble_m), "ensemble_m", self.ensemble_m, "must be a finite number")
        require(1 <= self.lookahead_steps <= 100, "lookahead_steps", self.lookahead_steps, "must be in [1, 100]")
        require(bool(self.controller_name) and "/" not in self.controller_name, "controller_name",
                self.controller_name, "must be a non-empty name without '/'")
        require(len(set(self.joints)) == len(self.joints), "joints", self.joints, "must not repeat a name")
        require(all(self.joints), "joints", self.joints, "must not contain empty names")
        require(bool(self.joints) or bool(self.controllers_yaml), "joints", self.joints,
                "is empty and controllers_yaml is not set: the node cannot know the controller's joints")
        require(0.0 <= self.velocity_scale <= 1.0, "velocity_scale", self.velocity_scale,
                "must be in (0, 1] (0 = from joint_limits_yaml, else 1)")
        for entry in self.yaml_vars:
            require("=" in entry and bool(entry.split("=", 1)[0].strip()), "yaml_vars", self.yaml_vars,
                    f"entries must be 'NAME=VALUE', not {entry!r}")
        require(self.gripper_command in GRIPPER_COMMANDS, "gripper_command", self.gripper_command,
                f"must be one of {list(GRIPPER_COMMANDS)}")
        require(self.gripper_controller != self.controller_name, "gripper_controller", self.gripper_controller,
                "must differ from controller_name (a gripper on the arm's controller is one of 'joints')")
        require("/" not in self.gripper_controller, "gripper_controller", self.gripper_controller,
                "must be a name without '/'")
        require(0.0 < self.gripper_rate <= 1000.0, "gripper_rate", self.gripper_rate, "must be in (0, 1000] Hz")
        require(0.0 <= self.gripper_deadband < float("inf"), "gripper_deadband", self.gripper_deadband,
                "must be finite and >= 0")
        require(self.gripper_max_effort >= 0.0, "gripper_max_effort", self.gripper_max_effort, "must be >= 0")
        require(self.max_staleness >= 0, "max_staleness", self.max_staleness, "must be >= 0")
        require(self.future_tolerance >= 0, "future_tolerance", self.future_tolerance, "must be >= 0")
        require(self.joint_state_timeout > 0.0, "joint_state_timeout", self.joint_state_timeout, "must be > 0 s")
        require(self.diagnostics_period >= 0.0, "diagnostics_period", self.diagnostics_period, "must be >= 0 s")
        for key in ("prefix_topic", "joint_states_topic", "status_topic", "reset_service", "enable_service"):
            require(bool(getattr(self, key)), key, getattr(self, key), "must not be empty")
        n_state = len(self.joints) + (1 if self.gripper_controller else 0)
        for key in LIMIT_LISTS:
            values = getattr(self, key)
            require(not values or not self.joints or len(values) == n_state, key, values,
                    f"must have one value per joint ({n_state} joints"
                    + (", the gripper joint last)" if self.gripper_controller else ")"))

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.control_rate))

    @property
    def trajectory_topic(self) -> str:
        """Relative: /<controller_name>/joint_trajectory in the root namespace, /left/... under 'left'."""
        return f"{self.controller_name}/joint_trajectory"

    # ---- the robot's files -----------------------------------------------------------------------
    # The node and `arvla robot-config` resolve through these same methods (resolve_robot).

    def variables(self) -> dict[str, str]:
        """Values of $(var NAME) in controllers_yaml: tf_prefix and the yaml_vars entries."""
        out = {"tf_prefix": self.tf_prefix}
        out.update(dict(entry.split("=", 1) for entry in self.yaml_vars))
        return {k.strip(): v for k, v in out.items()}

    def _controller(self, name: str) -> ControllerSpec:
        try:
            return controller_from_yaml(self.controllers_yaml, name, self.variables())
        except JointError as err:
            raise ConfigError(f"controllers_yaml: {err}") from err

    def arm_controller(self) -> Optional[ControllerSpec]:
        """The arm's controller in controllers_yaml, when the joints come from it (else None).

        Its type must be a JointTrajectoryController (joint_trajectory_controller, the UR driver's
        scaled_joint_trajectory_controller, ...) or not stated: arvla publishes
        trajectory_msgs/JointTrajectory on <controller_name>/joint_trajectory.
        """
        if self.joints:
            return None
        spec = self._controller(self.controller_name)
        if spec.kind not in ("trajectory", "unknown"):
            raise ConfigError(f"controller_name: '{self.controller_name}' is a {spec.type} in {spec.path}; arvla "
                              "publishes trajectory_msgs/JointTrajectory, which only JointTrajectoryController-type "
                              "controllers take (joint_trajectory_controller/JointTrajectoryController, "
                              "ur_controllers/ScaledJointTrajectoryController)")
        return spec

    def controller_joints(self) -> list[str]:
        """The controller's joints: the 'joints' parameter, else controllers_yaml's list."""
        if self.joints:
            return list(self.joints)
        spec = self.arm_controller()
        assert spec is not None
        return list(spec.joints)

    def gripper(self, urdf: Optional[UrdfRobot] = None, *, strict: bool = True) -> Optional[GripperSpec]:
        """The gripper output (None without gripper_controller). Joints of a gripper trajectory
        controller other than the gripper joint must mimic it in the URDF (they follow it);
        ``strict=False`` leaves them out when the URDF is not there yet (a node waiting for it)."""
        if not self.gripper_controller:
            return None
        name = self.gripper_controller
        spec = self._controller(name) if self.controllers_yaml else None
        command = self.gripper_command
        if command == "auto":
            kinds = {"gripper_action": "gripper_action", "trajectory": "joint_trajectory"}
            if spec is None or spec.kind not in kinds:
                why = ("controllers_yaml is not set" if spec is None else
                       f"its type in {spec.path} is {spec.type or 'not stated'}")
                raise ConfigError(f"gripper_command: 'auto' cannot tell how to command '{name}' ({why}); set "
                                  "gripper_command to 'gripper_action' or 'joint_trajectory'")
            command = kinds[spec.kind]
        if spec is not None and spec.kind == "parallel_gripper_action":
            raise ConfigError(f"gripper_controller: '{name}' is a {spec.type} (control_msgs/action/"
                              "ParallelGripperCommand), not supported yet; use a GripperActionController or a "
                              "joint_trajectory_controller for the gripper")
        joints = list(spec.joints) if spec is not None else []
        joint = self.gripper_joint
        if not joint:
            leaders = [j for j in joints if urdf is None or j not in urdf.joints or urdf.joints[j].mimic is None]
            if len(leaders) != 1:
                raise ConfigError(f"gripper_joint: not set and controller '{name}' has joints {joints}: name the "
                                  "one the policy commands")
            joint = leaders[0]
        if joint in self.controller_joints():
            raise ConfigError(f"gripper_joint: '{joint}' is also one of the arm controller's joints")
        if command == "gripper_action":
            action = self.gripper_action or f"{name}/gripper_cmd"
            return GripperSpec(name, joint, command, (joint,), action_name=action)
        controller_joints = joints or [joint]
        if joint not in controller_joints:
            raise ConfigError(f"gripper_joint: '{joint}' is not a joint of controller '{name}' {controller_joints}")
        others = [j for j in controller_joints if j != joint]
        followers: list[tuple[str, float, float]] = []
        if others and not strict and urdf is None:
            controller_joints = [joint]
        elif others:
            if urdf is None:
                raise ConfigError(f"gripper_controller: '{name}' also has joints {others}; they must mimic "
                                  f"'{joint}' in the URDF (robot_description / urdf_file / the topic), which "
                                  "is not available")
            mimics = {f[0]: f for f in urdf.followers(joint)}
            stray = [j for j in others if j not in mimics]
            if stray:
                raise ConfigError(f"gripper_controller: '{name}' has joints {stray} that do not mimic '{joint}' "
                                  f"in the robot_description from {urdf.origin}: one policy dimension cannot "
                                  "command them")
            followers = [mimics[j] for j in others]
        return GripperSpec(name, joint, command, tuple(controller_joints), tuple(followers),
                           topic=f"{name}/joint_trajectory")

    def state_joints(self) -> list[str]:
        """The joints the policy sees and commands, in node order: the arm's, then the gripper's."""
        spec = self.gripper(None, strict=False)
        gripper = spec.joint if spec is not None else ""
        return self.controller_joints() + ([gripper] if gripper else [])

    def limits_file(self) -> Optional[JointLimitsFile]:
        if not self.joint_limits_yaml:
            return None
        try:
            return read_joint_limits_yaml(self.joint_limits_yaml)
        except JointError as err:
            raise ConfigError(f"joint_limits_yaml: {err}") from err

    def urdf(self) -> Optional[UrdfRobot]:
        """The URDF from the robot_description parameter or urdf_file (None: neither is set)."""
        try:
            if self.robot_description:
                return UrdfRobot.from_xml(self.robot_description, "parameter robot_description")
            if self.urdf_file:
                return UrdfRobot.from_file(self.urdf_file)
        except JointError as err:
            raise ConfigError(f"{'robot_description' if self.robot_description else 'urdf_file'}: {err}") from err
        return None

    def _tables(self, joints: list[str], n_params: int, limits_file: Optional[JointLimitsFile]
                ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
        lists = {key: getattr(self, key) for key in LIMIT_LISTS}
        for key, values in lists.items():
            if values and len(values) != n_params:
                raise ConfigError(f"{key}: {len(values)} values for {n_params} joints {joints[:n_params]}")
        try:
            params = params_table(joints[:n_params], **lists)
            yaml = (limits_from_joint_limits_file(limits_file, joints, tf_prefix=self.tf_prefix)
                    if limits_file is not None else {})
        except JointError as err:
            raise ConfigError(f"joint limits: {err}") from err
        return params, yaml

    def needs_robot_description(self) -> bool:
        """Whether some limit (position or velocity) of a commanded joint is left to the URDF, or a
        gripper trajectory controller has extra joints whose mimic relation only the URDF gives."""
        joints = self.state_joints()
        params, yaml = self._tables(joints, len(joints), self.limits_file())
        for name in joints:
            have = {**yaml.get(name, {}), **params.get(name, {})}
            if not (have.get("continuous") or ("lower" in have and "upper" in have)) or "max_velocity" not in have:
                return True
        if self.gripper_controller and self.controllers_yaml and self.gripper_command != "gripper_action":
            spec = self._controller(self.gripper_controller)
            return spec.kind != "gripper_action" and len(spec.joints) > 1
        return False

    def resolve_robot(self, urdf: Optional[UrdfRobot] = None) -> RobotSetup:
        """Joints, gripper output and limits with their sources, from the parameters, the files and
        ``urdf`` (default: the robot_description parameter / urdf_file). ConfigError naming the key
        on anything the node would refuse."""
        if urdf is None:
            urdf = self.urdf()
        arm = self.arm_controller()
        joints = self.controller_joints()
        gripper = self.gripper(urdf)
        state = joints + ([gripper.joint] if gripper is not None else [])
        if urdf is not None:
            try:
                for name in state:
                    urdf.check_commandable(name)
            except JointError as err:
                raise ConfigError(f"joints: {err}") from err
        followers = [f[0] for f in gripper.followers] if gripper is not None else []
        limits_file = self.limits_file()
        params, yaml = self._tables(state + followers, len(state), limits_file)
        hint = (" (set parameter '{}', give it in joint_limits_yaml, or give the URDF: robot_description, "
                "urdf_file or the robot_description topic)")
        try:
            urdf_table = urdf.limits_for(state + followers) if urdf is not None else None
            resolution = resolve_joint_limits(
                state + followers, params=params, yaml=yaml, urdf=urdf_table,
                labels={"params": "parameter", "yaml": "joint_limits.yaml", "urdf": "URDF"},
                velocity_scale=self.velocity_scale or None,
                yaml_velocity_scale=limits_file.default_velocity_scaling_factor if limits_file else None,
                yaml_acceleration_scale=limits_file.default_acceleration_scaling_factor if limits_file else None,
                missing_hint=hint.format("position_min/position_max' / 'max_velocity"))
        except JointError as err:
            raise ConfigError(f"joint limits: {err}") from err
        notes = list(resolution.notes)
        if limits_file is not None and self.tf_prefix:
            stripped = [n for n in state + followers if n not in limits_file.table and n.startswith(self.tf_prefix)
                        and n[len(self.tf_prefix):] in limits_file.table]
            if stripped:
                notes.append(f"joint_limits.yaml names {len(stripped)} joints without tf_prefix "
                             f"'{self.tf_prefix}': matched {stripped[0][len(self.tf_prefix):]} -> {stripped[0]}, ...")
        if arm is not None and arm.kind == "unknown":
            notes.append(f"controllers_yaml states no type for '{arm.name}': it must be a JointTrajectoryController")
        resolution = dataclasses.replace(resolution, notes=tuple(notes))
        return RobotSetup(self.controller_name, arm, tuple(joints), gripper, resolution,
                          urdf.origin if urdf is not None else None,
                          f"{limits_file.path} ({limits_file.where})" if limits_file is not None else None)

    def joint_limits(self, joints: list[str], urdf: Optional[UrdfRobot] = None) -> JointLimits:
        """Limits for ``joints`` from the list parameters, joint_limits_yaml and the URDF
        (ConfigError naming the key). ``resolve_robot`` gives them with their sources."""
        limits_file = self.limits_file()
        params, yaml = self._tables(list(joints), len(joints), limits_file)
        if urdf is None:
            urdf = self.urdf()
        try:
            return resolve_joint_limits(
                joints, params=params, yaml=yaml, urdf=urdf.limits_for(joints) if urdf is not None else None,
                velocity_scale=self.velocity_scale or None,
                yaml_velocity_scale=limits_file.default_velocity_scaling_factor if limits_file else None,
                yaml_acceleration_scale=limits_file.default_acceleration_scaling_factor if limits_file else None,
                missing_hint=" (set parameter 'max_velocity', give it in joint_limits_yaml, or give the URDF)"
            ).limits
        except JointError as err:
            raise ConfigError(f"joint limits: {err}") from err


LIMIT_LISTS = ("position_min", "position_max", "max_velocity", "max_acceleration")


@dataclasses.dataclass(frozen=True)
class RobotSetup:
    """What the node commands, resolved from its parameters and the robot's files.

    ``joints``: the arm controller's joints (command order); ``gripper``: the gripper output or
    None; ``resolution``: limits and their sources for the state joints (arm, then gripper) and
    the gripper's mimic followers.
    """

    controller_name: str
    controller: Optional[ControllerSpec]
    joints: tuple[str, ...]
    gripper: Optional[GripperSpec]
    resolution: LimitsResolution
    urdf_origin: Optional[str]
    joint_limits_file: Optional[str]

    @property
    def state_joints(self) -> list[str]:
        return list(self.joints) + ([self.gripper.joint] if self.gripper is not None else [])

    @property
    def state_limits(self) -> JointLimits:
        return self.resolution.limits.subset(self.state_joints)

    @property
    def limits(self) -> JointLimits:
        """The arm controller's joints' limits (what its trajectories obey)."""
        return self.resolution.limits.subset(self.joints)

    @property
    def gripper_limits(self) -> Optional[JointLimits]:
        if self.gripper is None:
            return None
        return self.resolution.limits.subset(self.gripper.controller_joints)

    def describe(self) -> list[str]:
        """Log lines: the controller, the gripper, the sources, then one line per joint."""
        return self.header() + self.resolution.describe()

    def header(self) -> list[str]:
        c = self.controller
        lines = [f"controller '{self.controller_name}'"
                 + (f" ({c.type or 'type not stated'}, {c.path})" if c is not None else " (joints from parameter)")
                 + f": joints {list(self.joints)}"]
        if self.gripper is not None:
            g = self.gripper
            where = g.action_name if g.command == "gripper_action" else g.topic
            lines.append(f"gripper '{g.controller}': joint {g.joint} via {g.command} -> {where}"
                         + (f", followers {[f[0] for f in g.followers]}" if g.followers else ""))
        lines.append(f"sources: URDF {self.urdf_origin or '(none)'}; joint_limits.yaml "
                     f"{self.joint_limits_file or '(none)'}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        c = self.controller
        return {"controller": {"name": self.controller_name, "type": c.type if c else None,
                               "file": c.path if c else None, "joints": list(self.joints)},
                "gripper": self.gripper.to_dict() if self.gripper is not None else None,
                "state_joints": self.state_joints, "urdf": self.urdf_origin,
                "joint_limits_yaml": self.joint_limits_file, **self.resolution.to_dict()}


def parameter_fields() -> list[dataclasses.Field[Any]]:
    """The dataclass fields, in declaration order: one ROS parameter each."""
    return list(dataclasses.fields(ExpertNodeConfig))


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def config_from_parameters(values: dict[str, Any]) -> ExpertNodeConfig:
    """Build the config from parameter values (None = not set -> the field default)."""
    data = {k: v for k, v in values.items() if v is not None}
    # ROS integer-valued double parameters arrive as int; from_dict accepts ints for floats.
    for key in LIMIT_LISTS:
        if key in data:
            data[key] = [float(x) for x in data[key]]
    return from_dict(ExpertNodeConfig, data)


def expand_path(path: str) -> str:
    """'~' and $VARS in file path parameters (launch files often pass $HOME-relative paths)."""
    return os.path.expandvars(os.path.expanduser(path)) if path else path

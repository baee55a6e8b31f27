"""Configuration of the action expert node: one dataclass, one field per ROS parameter.

ROS-free. The node declares one parameter per field (name, type, default and the ``help`` text
below as its description), reads them all once, and builds ``ExpertNodeConfig`` through
``arvla.config.from_dict`` so a bad value fails at start with an error naming the key.
``config/action_expert.yaml`` lists every field (a test keeps the two in sync).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from arvla.config import ConfigError, from_dict, param_field, require
from arvla_action_expert.joints import (JointError, JointLimits, controller_joints_from_yaml,
                                        limits_from_joint_limits_yaml, resolve_limits)

NODE_NAME = "arvla_action_expert"


_p = param_field  # short: one per field below


INFERENCE_MODES = ("torch", "int8", "onnx", "onnx_int8")
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
                                 "bench/expert_step.py for speed and agreement with fp32).")
    control_rate: float = _p(20.0, "Control tick rate in Hz; must match the checkpoint's control_rate_hz "
                                   "(one AR step = one period). The timer runs on the node clock (use_sim_time).")
    lookahead_steps: int = _p(3, "AR steps published per tick as trajectory points (row 0 is committed to "
                                 "memory, the rest is lookahead that covers latency).")
    trajectory_timing: str = _p("seamless", "How each tick's trajectory is timed. 'seamless': stamped with "
                                             "the tick time, its first point is the previous trajectory's point "
                                             "that the controller is already moving towards, the new AR rows "
                                             "1.. follow (needs lookahead_steps >= 2): the motion does not depend "
                                             "on when inside the tick the step finishes. 'tick': stamped with the "
                                             "tick time, rows 0.. at tick + (k+1) periods. 'arrival': stamp 0, the "
                                             "controller starts the plan when it arrives (step latency shifts "
                                             "every plan; for controllers on a host without a synchronised clock).")
    ensemble_steps: int = _p(1, "Multi-token ensembling: execute for each step the mean of what the last "
                                "ensemble_steps AR tokens predicted for it (a model trained with "
                                "predict_steps K predicts K steps per token). 1 = plain AR; at most K.")
    controller_name: str = _p("arm_controller", "joint_trajectory_controller name: commands go to "
                                                "/<controller_name>/joint_trajectory.")
    joints: list[str] = _p([], "Joint names of the controller, in command order. Empty: read them from "
                               "controllers_yaml.")
    controllers_yaml: str = _p("", "ros2_controllers.yaml path; the joints list of controller_name is used "
                                   "when 'joints' is empty.")
    joint_limits_yaml: str = _p("", "MoveIt-style joint_limits.yaml path; supplies position/velocity limits "
                                    "not given by the list parameters below.")
    position_min: list[float] = _p([], "Lower position limit per joint (order of 'joints'); empty: from "
                                       "joint_limits_yaml.")
    position_max: list[float] = _p([], "Upper position limit per joint; empty: from joint_limits_yaml.")
    max_velocity: list[float] = _p([], "Velocity limit per joint (rad/s or m/s); empty: from joint_limits_yaml.")
    velocity_scale: float = _p(1.0, "Scale (0, 1] applied to the velocity limits.")
    max_staleness: int = _p(10, "Largest prefix staleness (control steps) the expert acts on; beyond it, hold.")
    future_tolerance: int = _p(0, "Prefixes up to this many steps in the future are accepted (clock skew "
                                  "between hosts); beyond it they are rejected and counted.")
    allow_action_only: bool = _p(False, "Without any prefix yet, run action-only (stage-1 kinematic syntax) "
                                        "instead of waiting.")
    joint_state_timeout: float = _p(0.5, "Seconds (node clock) after which the last /joint_states is stale -> hold.")
    enabled_at_start: bool = _p(True, "Start enabled (publishing). /arvla/enable switches it at run time.")
    diagnostics_period: float = _p(1.0, "Seconds between /diagnostics messages (also sent on every state "
                                        "change); 0 = every tick.")
    prefix_topic: str = _p("/arvla/vl_prefix", "arvla_msgs/VLPrefix input topic.")
    joint_states_topic: str = _p("/joint_states", "sensor_msgs/JointState input topic.")
    status_topic: str = _p("/arvla/expert_status", "arvla_msgs/ExpertStatus output topic (every tick).")
    reset_service: str = _p("/arvla/reset_memory", "arvla_msgs/ResetMemory service name.")
    enable_service: str = _p("/arvla/enable", "std_srvs/SetBool service name (false = publish nothing).")

    def __post_init__(self) -> None:
        self.checkpoint = expand_path(self.checkpoint)
        self.controllers_yaml = expand_path(self.controllers_yaml)
        self.joint_limits_yaml = expand_path(self.joint_limits_yaml)
        require(self.torch_threads >= 0, "torch_threads", self.torch_threads, "must be >= 0")
        require(self.inference in INFERENCE_MODES, "inference", self.inference,
                f"must be one of {list(INFERENCE_MODES)}")
        require(0.0 < self.control_rate <= 1000.0, "control_rate", self.control_rate, "must be in (0, 1000] Hz")
        require(self.trajectory_timing in TRAJECTORY_TIMINGS, "trajectory_timing", self.trajectory_timing,
                f"must be one of {list(TRAJECTORY_TIMINGS)}")
        require(self.ensemble_steps >= 1, "ensemble_steps", self.ensemble_steps, "must be >= 1")
        require(1 <= self.lookahead_steps <= 100, "lookahead_steps", self.lookahead_steps, "must be in [1, 100]")
        require(self.trajectory_timing != "seamless" or self.lookahead_steps >= 2, "lookahead_steps",
                self.lookahead_steps, "must be >= 2 with trajectory_timing 'seamless' (row 0 is replaced by "
                "the point being executed)")
        require(bool(self.controller_name) and "/" not in self.controller_name, "controller_name",
                self.controller_name, "must be a non-empty name without '/'")
        require(len(set(self.joints)) == len(self.joints), "joints", self.joints, "must not repeat a name")
        require(all(self.joints), "joints", self.joints, "must not contain empty names")
        require(bool(self.joints) or bool(self.controllers_yaml), "joints", self.joints,
                "is empty and controllers_yaml is not set: the node cannot know the controller's joints")
        require(0.0 < self.velocity_scale <= 1.0, "velocity_scale", self.velocity_scale, "must be in (0, 1]")
        require(self.max_staleness >= 0, "max_staleness", self.max_staleness, "must be >= 0")
        require(self.future_tolerance >= 0, "future_tolerance", self.future_tolerance, "must be >= 0")
        require(self.joint_state_timeout > 0.0, "joint_state_timeout", self.joint_state_timeout, "must be > 0 s")
        require(self.diagnostics_period >= 0.0, "diagnostics_period", self.diagnostics_period, "must be >= 0 s")
        for key in ("prefix_topic", "joint_states_topic", "status_topic", "reset_service", "enable_service"):
            require(bool(getattr(self, key)), key, getattr(self, key), "must not be empty")
        for key in ("position_min", "position_max", "max_velocity"):
            values = getattr(self, key)
            require(not values or not self.joints or len(values) == len(self.joints), key, values,
                    f"must have one value per joint ({len(self.joints)} joints)")

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.control_rate))

    @property
    def trajectory_topic(self) -> str:
        return f"/{self.controller_name}/joint_trajectory"

    def controller_joints(self) -> list[str]:
        """The controller's joints: the 'joints' parameter, else controllers_yaml's list."""
        if self.joints:
            return list(self.joints)
        try:
            return controller_joints_from_yaml(self.controllers_yaml, self.controller_name)
        except JointError as err:
            raise ConfigError(f"controllers_yaml: {err}") from err

    def joint_limits(self, joints: list[str]) -> JointLimits:
        """Limits for ``joints`` from the list parameters and joint_limits_yaml (ConfigError naming the key)."""
        for key in ("position_min", "position_max", "max_velocity"):
            values = getattr(self, key)
            if values and len(values) != len(joints):
                raise ConfigError(f"{key}: {len(values)} values for {len(joints)} joints {joints}")
        try:
            from_file = (limits_from_joint_limits_yaml(self.joint_limits_yaml, joints)
                         if self.joint_limits_yaml else None)
            return resolve_limits(joints, position_min=self.position_min, position_max=self.position_max,
                                  max_velocity=self.max_velocity, from_file=from_file,
                                  velocity_scale=self.velocity_scale)
        except JointError as err:
            raise ConfigError(f"joint limits: {err}") from err


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
    for key in ("position_min", "position_max", "max_velocity"):
        if key in data:
            data[key] = [float(x) for x in data[key]]
    return from_dict(ExpertNodeConfig, data)


def expand_path(path: str) -> str:
    """'~' and $VARS in file path parameters (launch files often pass $HOME-relative paths)."""
    return os.path.expandvars(os.path.expanduser(path)) if path else path

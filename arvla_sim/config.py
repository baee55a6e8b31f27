"""Configuration of the sim node: one dataclass, one field per ROS parameter (ROS-free).

The node declares one parameter per field (its default, and the ``help`` text as the
description), reads them once and builds ``SimNodeConfig`` through ``arvla_base.config.from_dict``,
so a bad value fails at start with an error naming the parameter. ``config/sim.yaml`` lists
every field (a test keeps the two in sync).

``lockstep``: the sim advances one control period of the action expert only once the expert's
tick at the current instant has been handled (its ``ExpertStatus``), and the prefix of a camera
frame captured at t is awaited before the clock shows t + ``lockstep_perception_steps`` periods
(and not handed to perception before the tick one period earlier): results no longer depend on
machine load (``arvla_sim/node.py`` describes the protocol and what it relies on).
"""

from __future__ import annotations

import dataclasses

from arvla_base.config import param_field, require
from arvla_sim.env import SimEnvConfig
from arvla_sim.robot import PHYSICS_DT
from arvla_sim.tasks import TASKS

NODE_NAME = "arvla_sim"
PHYSICS_HZ = 1.0 / PHYSICS_DT


_p = param_field  # short: one per field below


def _divides_physics(rate: float) -> bool:
    n = PHYSICS_HZ / rate
    return abs(n - round(n)) < 1e-6


@dataclasses.dataclass
class SimNodeConfig:
    """Every parameter of the sim node (see each field's help)."""

    task: str = _p("pick_lift", f"Task of the episodes: one of {sorted(TASKS)}. Setting it at run time "
                                "switches the task in place: a new episode of it starts, topics and clock go on.")
    seed: int = _p(0, "Seed of the first episode; reset k (k = 0, 1, ...) uses seed + k. Setting this "
                      "parameter at run time restarts the count: the next /sim/reset uses exactly it.")
    real_time_factor: float = _p(1.0, "Sim seconds per wall second (>1 faster than real time); "
                                      "0 = as fast as possible.")
    controller_name: str = _p("arm_controller", "The emulated joint_trajectory_controller: commands are read "
                                                "from /<controller_name>/joint_trajectory.")
    controller_rate_hz: float = _p(100.0, "Update rate of the trajectory follower (sim time); must divide "
                                          f"the {PHYSICS_HZ:g} Hz physics rate.")
    joint_states_rate_hz: float = _p(100.0, "sensor_msgs/JointState publish rate (sim time); must divide "
                                            "the physics rate, at most controller_rate_hz.")
    camera_rate_hz: float = _p(10.0, "Camera frame rate (sim time); 0 = no camera (no rendering).")
    image_height: int = _p(224, "Camera image height in pixels.")
    image_width: int = _p(224, "Camera image width in pixels.")
    camera_frame_id: str = _p("camera", "header.frame_id of the images.")
    home_noise: float = _p(0.02, "Uniform noise (rad) on the start posture of each episode (seeded).")
    joint_states_topic: str = _p("/joint_states", "sensor_msgs/JointState output (sensor-data QoS).")
    image_topic: str = _p("/camera/image_raw", "sensor_msgs/Image rgb8 output (sensor-data QoS); "
                                               "header.stamp = sim time of capture.")
    success_topic: str = _p("/sim/success", "std_msgs/Bool: the task's success check, published with every "
                                            "camera frame (or at 10 Hz without camera) and on change.")
    instruction_topic: str = _p("/arvla/instruction", "std_msgs/String (reliable, transient local): the task's "
                                                      "instruction, published at every reset; '' = off.")
    reset_service: str = _p("/sim/reset", "std_srvs/Trigger: start the next episode (robot home, objects "
                                          "placed by the seed, trajectory dropped).")
    lockstep: bool = _p(False, "Lock-step mode (deterministic closed loop, independent of machine load): /clock "
                               "and /joint_states are published once per control period of the expert "
                               "(lockstep_control_rate_hz), and the sim advances to the next period only "
                               "when the expert's ExpertStatus for the current instant has arrived "
                               "(lockstep_status_topic); camera frames are handed to perception with a "
                               "latency of lockstep_perception_steps periods. real_time_factor then "
                               "only caps the speed (0 = as fast as the handshakes go). Needs "
                               "joint_states_rate_hz and camera_rate_hz to divide lockstep_control_rate_hz.")
    lockstep_control_rate_hz: float = _p(20.0, "Lock-step: the action expert's tick rate (its control_rate); "
                                               "one handshake per period. A whole number of controller "
                                               "periods; the expert's timer must tick on this grid.")
    lockstep_perception_steps: int = _p(2, "Lock-step: perception latency in control periods. A frame "
                                           "captured at t (header.stamp t) is handed to perception after the "
                                           "expert's tick at t + (steps - 1) periods and its VLPrefix awaited "
                                           "before the clock reaches t + steps periods: the expert first uses "
                                           "it at exactly that tick (staleness = steps). 0 = the prefix of "
                                           "the frame at t is there for the tick at t.")
    lockstep_timeout_s: float = _p(10.0, "Lock-step: wall seconds to wait for a handshake (status or prefix) "
                                         "before advancing anyway; each such advance is counted "
                                         "(SimNode.lockstep_timeouts) and logged as a warning: the run is then "
                                         "no longer deterministic.")
    lockstep_status_topic: str = _p("/arvla/expert_status", "Lock-step: arvla_msgs/ExpertStatus published by "
                                                            "the expert every tick, header.stamp = the tick's "
                                                            "time; '' = do not wait for an expert.")
    lockstep_prefix_topic: str = _p("/arvla/vl_prefix", "Lock-step: arvla_msgs/VLPrefix published by perception, "
                                                        "header.stamp = the frame's capture stamp; '' = do not "
                                                        "wait for prefixes (frames are still delayed).")

    def __post_init__(self) -> None:
        require(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        require(self.real_time_factor >= 0, "real_time_factor", self.real_time_factor, "must be >= 0")
        require(bool(self.controller_name) and "/" not in self.controller_name, "controller_name",
                self.controller_name, "must be a non-empty name without '/'")
        for key in ("controller_rate_hz", "joint_states_rate_hz"):
            rate = getattr(self, key)
            require(0 < rate <= PHYSICS_HZ and _divides_physics(rate), key, rate,
                    f"must be in (0, {PHYSICS_HZ:g}] and divide {PHYSICS_HZ:g} Hz evenly")
        require(self.joint_states_rate_hz <= self.controller_rate_hz, "joint_states_rate_hz",
                self.joint_states_rate_hz, f"must be <= controller_rate_hz ({self.controller_rate_hz:g})")
        require(self.camera_rate_hz == 0 or (0 < self.camera_rate_hz <= self.controller_rate_hz
                                             and _divides_physics(self.camera_rate_hz)),
                "camera_rate_hz", self.camera_rate_hz,
                f"must be 0 or in (0, controller_rate_hz] and divide {PHYSICS_HZ:g} Hz evenly")
        for key in ("joint_states_rate_hz", "camera_rate_hz"):
            rate = getattr(self, key)
            require(rate == 0 or self.every(rate) % self.every(self.controller_rate_hz) == 0, key, rate,
                    f"must divide controller_rate_hz ({self.controller_rate_hz:g}) evenly: events happen on "
                    "controller ticks")
        for key in ("joint_states_topic", "image_topic", "success_topic", "reset_service"):
            require(bool(getattr(self, key)), key, getattr(self, key), "must not be empty")
        require(self.lockstep_control_rate_hz > 0, "lockstep_control_rate_hz", self.lockstep_control_rate_hz,
                "must be > 0")
        require(self.lockstep_perception_steps >= 0, "lockstep_perception_steps", self.lockstep_perception_steps,
                "must be >= 0")
        require(self.lockstep_timeout_s > 0, "lockstep_timeout_s", self.lockstep_timeout_s, "must be > 0")
        if self.lockstep:
            self._check_lockstep()
        self.env_config()   # image size / noise validated by SimEnvConfig

    def _check_lockstep(self) -> None:
        """Every event of the lock-step protocol happens on the expert's grid."""
        rate = self.lockstep_control_rate_hz
        tick = self.every(self.controller_rate_hz)
        require(rate <= self.controller_rate_hz and _divides_physics(rate) and self.every(rate) % tick == 0,
                "lockstep_control_rate_hz", rate,
                f"must be a whole number of controller periods (controller_rate_hz {self.controller_rate_hz:g})")
        period = self.every(rate)
        require(self.every(self.joint_states_rate_hz) % period == 0, "joint_states_rate_hz",
                self.joint_states_rate_hz,
                f"must divide lockstep_control_rate_hz ({rate:g}) in lock-step: at most one joint state per "
                "handshake (more would queue up in the expert's subscription, and which one its tick reads "
                "would depend on load)")
        require(self.camera_rate_hz == 0 or self.every(self.camera_rate_hz) % period == 0, "camera_rate_hz",
                self.camera_rate_hz, f"must be 0 or divide lockstep_control_rate_hz ({rate:g}) in lock-step: "
                "frames are captured on handshakes")

    @property
    def lockstep_period_ns(self) -> int:
        """One control period of the expert (lock-step), in ns of sim time."""
        return self.every(self.lockstep_control_rate_hz) * int(round(PHYSICS_DT * 1e9))

    def env_config(self) -> SimEnvConfig:
        return SimEnvConfig(task=self.task, control_rate_hz=self.controller_rate_hz,
                            image_height=self.image_height, image_width=self.image_width,
                            home_noise=self.home_noise)

    @property
    def trajectory_topic(self) -> str:
        return f"/{self.controller_name}/joint_trajectory"

    def every(self, rate_hz: float) -> int:
        """Physics steps between two events at ``rate_hz``."""
        return int(round(PHYSICS_HZ / rate_hz))


FIELD_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in dataclasses.fields(SimNodeConfig)}

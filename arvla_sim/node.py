"""ROS 2 node ``arvla_sim``: the MuJoCo Panda behaving like a robot behind ros2_control.

Thin adapter around the ROS-free core (env.py, jtc.py, tasks.py):

- subscribes ``/<controller_name>/joint_trajectory`` (trajectory_msgs/JointTrajectory, reliable,
  depth 10) and follows it with joint_trajectory_controller semantics (``jtc.py``: replace on
  arrival, stamp 0 = now, past points dropped, cubic/linear interpolation, hold at the end);
  a rejected message is logged with its reason and the current trajectory continues;
- the controller's joints are ``panda_joint1..7`` + ``panda_finger_joint1`` (the gripper: opening of
  one finger in metres, 0..0.04, the second finger mimics it) -- one 8-joint controller, so a
  policy's 8-D action is one trajectory point;
- publishes ``/clock`` (rosgraph_msgs/Clock) after every controller tick, ``/joint_states``
  (stamp = sim time), camera ``sensor_msgs/Image`` rgb8 (stamp = sim time of capture),
  ``/sim/success`` (std_msgs/Bool) and the task's instruction (transient local) at each reset;
- ``/sim/reset`` (std_srvs/Trigger) starts the next seeded episode.
- No OpenGL (neither EGL nor OSMesa works): the node logs why and runs without a camera.

Sim time is one monotonic clock over all episodes (an episode's physics restarts at 0, the
published clock does not jump back), so ``use_sim_time`` nodes never see time reverse.
Pacing: a wall timer advances physics to ``real_time_factor`` x elapsed wall time (at most a few
ticks per callback so subscriptions stay served); ``real_time_factor: 0`` = short
bursts of ticks (a few ms of wall time each) as fast as the executor allows.

Run: ``sim_node --ros-args --params-file config/sim.yaml``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy,
                       qos_profile_sensor_data)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from arvla_base.config import ConfigError, from_dict
from arvla_base.params import declare_config_parameters
from arvla_base.rosutil import ns_to_stamp, stamp_to_ns
from arvla_sim.config import FIELD_HELP, NODE_NAME, SimNodeConfig
from arvla_sim.env import SimEnv
from arvla_sim.jtc import JointTrajectoryFollower, TrajPoint
from arvla_sim.robot import JOINT_NAMES, PHYSICS_DT, SimError

TRAJECTORY_QOS = QoSProfile(depth=10, history=QoSHistoryPolicy.KEEP_LAST,
                            reliability=QoSReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                         reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
MAX_CATCH_UP_TICKS = 10      # per timer callback; beyond that the sim slips behind real time
FAST_BURST_S = 0.003         # real_time_factor 0: wall time per burst of ticks


class SimNode(Node):
    """The simulated robot: trajectory in, clock/joint states/camera/success out."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config: SimNodeConfig = self._read_config()
        cfg = self.config
        self.env = SimEnv(cfg.env_config())
        self.tick_steps = cfg.every(cfg.controller_rate_hz)    # physics steps per controller tick
        self.follower = JointTrajectoryFollower(JOINT_NAMES, self.env.world.positions())
        self.episode = -1
        self._seed_base = cfg.seed
        self._episode_offset_ns = 0     # sim clock at the start of the current episode
        self._physics_steps = 0         # within the episode
        self.slipped_ticks = 0          # ticks that real time wanted but we could not deliver
        self._last_success: bool | None = None

        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._js_pub = self.create_publisher(JointState, cfg.joint_states_topic, qos_profile_sensor_data)
        self._img_pub = (self.create_publisher(Image, cfg.image_topic, qos_profile_sensor_data)
                         if cfg.camera_rate_hz > 0 else None)
        self._success_pub = self.create_publisher(Bool, cfg.success_topic, 10)
        self._instr_pub = (self.create_publisher(String, cfg.instruction_topic, LATCHED_QOS)
                           if cfg.instruction_topic else None)
        self.create_subscription(JointTrajectory, cfg.trajectory_topic, self._on_trajectory, TRAJECTORY_QOS)
        self.create_service(Trigger, cfg.reset_service, self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        if self._img_pub is not None:
            try:
                self.env.reset(cfg.seed)
                self.env.render()
            except SimError as err:   # no EGL/OSMesa here: run on as a robot without a camera
                self.get_logger().error(f"camera disabled, no frames on {cfg.image_topic}: {err}")
                self.destroy_publisher(self._img_pub)
                self._img_pub = None
        self.reset_episode()
        rtf = cfg.real_time_factor
        period = (1.0 / cfg.controller_rate_hz) / rtf if rtf > 0 else 1e-4
        self._wall0 = time.monotonic()
        self._sim0_ns = self.now_ns
        self._timer = self.create_timer(period, self._on_timer)   # wall clock (this node never uses sim time)
        self.get_logger().info(
            f"task {cfg.task}: following {cfg.trajectory_topic} at {cfg.controller_rate_hz:g} Hz, joints "
            f"{list(JOINT_NAMES)}; camera {cfg.camera_rate_hz:g} Hz on {cfg.image_topic}; "
            f"real_time_factor {rtf:g}")

    # ------------------------------------------------------------------ parameters
    def _read_config(self) -> SimNodeConfig:
        """Declare one parameter per config field (all read-only but ``seed``), read once, validate."""
        values = declare_config_parameters(self, SimNodeConfig, FIELD_HELP, writable=frozenset({"seed"}))
        try:
            return from_dict(SimNodeConfig, values)
        except ConfigError as err:
            raise ConfigError(f"{self.get_name()} parameter {err}") from err

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        for p in params:
            if p.name == "seed":
                if not isinstance(p.value, int) or p.value < 0:
                    return SetParametersResult(successful=False, reason=f"seed must be an int >= 0, got {p.value!r}")
                self._seed_base = p.value
                self.episode = -1      # the next reset uses exactly this seed
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ time
    @property
    def now_ns(self) -> int:
        """The sim clock: monotonic over episodes."""
        return self._episode_offset_ns + self._physics_steps * int(round(PHYSICS_DT * 1e9))

    # ------------------------------------------------------------------ episodes
    def reset_episode(self) -> int:
        """Next seeded episode; returns its seed. The trajectory is dropped: hold the home posture."""
        self.episode += 1
        seed = self._seed_base + self.episode
        self._episode_offset_ns = self.now_ns + self.tick_steps * int(round(PHYSICS_DT * 1e9))
        self._physics_steps = 0
        self.env.reset(seed)
        self.follower.hold(self.env.world.positions(), self.now_ns)
        self._last_success = None
        if self._instr_pub is not None:
            self._instr_pub.publish(String(data=self.env.task.instruction))
        self._publish(force=True)
        return seed

    # ------------------------------------------------------------------ what evaluation reads
    def episode_time_ns(self) -> int:
        """Physics time since the current episode started (its start = ``now_ns`` minus this)."""
        return int(round(self.env.world.time * 1e9))

    def success(self) -> bool:
        """The current episode's task is done."""
        return bool(self.env.success())

    def failure(self) -> bool:
        """The current episode can no longer succeed (e.g. the object fell off the table)."""
        return bool(self.env.failure())

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) position limits in JOINT_NAMES order (copies)."""
        world = self.env.world
        return world.lower.copy(), world.upper.copy()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        seed = self.reset_episode()
        self._wall0, self._sim0_ns = time.monotonic(), self.now_ns
        response.success = True
        response.message = f"episode {self.episode}: task {self.config.task}, seed {seed}"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ commands
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        points = [TrajPoint(list(p.positions), int(p.time_from_start.sec) * 1_000_000_000
                            + int(p.time_from_start.nanosec), list(p.velocities))
                  for p in msg.points]
        ok, reason = self.follower.set_trajectory(list(msg.joint_names), points,
                                                  stamp_ns=stamp_to_ns(msg.header.stamp), now_ns=self.now_ns)
        if not ok:
            self.get_logger().warning(f"rejected trajectory on {self.config.trajectory_topic}: {reason}")

    # ------------------------------------------------------------------ stepping
    def _on_timer(self) -> None:
        if self.config.real_time_factor <= 0:
            # As fast as possible, but hand control back every few ms so that incoming
            # trajectories and service calls are served between bursts.
            deadline = time.monotonic() + FAST_BURST_S
            for _ in range(MAX_CATCH_UP_TICKS):
                self.tick()
                if time.monotonic() >= deadline:
                    break
            return
        wanted = self._sim0_ns + int((time.monotonic() - self._wall0) * self.config.real_time_factor * 1e9)
        tick_ns = self.tick_steps * int(round(PHYSICS_DT * 1e9))
        n = 0
        while self.now_ns + tick_ns <= wanted and n < MAX_CATCH_UP_TICKS:
            self.tick()
            n += 1
        behind = (wanted - self.now_ns) // tick_ns
        if behind > MAX_CATCH_UP_TICKS:   # cannot keep up: slip instead of bursting forever
            self.slipped_ticks += int(behind)
            self._wall0, self._sim0_ns = time.monotonic(), self.now_ns

    def tick(self) -> None:
        """One controller period: sample the trajectory, step physics, publish what is due."""
        q_cmd, _ = self.follower.sample(self.now_ns)
        self.env.command(q_cmd)
        self.env.step_physics(self.tick_steps)
        self._physics_steps += self.tick_steps
        self._publish()

    def _publish(self, force: bool = False) -> None:
        cfg = self.config
        stamp = ns_to_stamp(self.now_ns)
        self._clock_pub.publish(Clock(clock=stamp))
        steps = self._physics_steps
        if force or steps % cfg.every(cfg.joint_states_rate_hz) == 0:
            js = JointState()
            js.header.stamp = stamp
            js.name = list(JOINT_NAMES)
            js.position = self.env.world.positions().tolist()
            js.velocity = self.env.world.velocities().tolist()
            self._js_pub.publish(js)
        status_every = cfg.every(cfg.camera_rate_hz if cfg.camera_rate_hz > 0 else 10.0)
        success = self.env.success()
        if self._img_pub is not None and (force or steps % cfg.every(cfg.camera_rate_hz) == 0):
            self._img_pub.publish(self._image(stamp))
        if force or success != self._last_success or steps % status_every == 0:
            self._success_pub.publish(Bool(data=success))
            self._last_success = success

    def _image(self, stamp: Any) -> Image:
        rgb = self.env.render()            # (H, W, 3) uint8 at this sim instant
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = self.config.camera_frame_id
        msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
        msg.encoding = "rgb8"
        msg.is_bigendian = 0
        msg.step = 3 * msg.width
        msg.data = np.ascontiguousarray(rgb).tobytes()
        return msg

    def destroy_node(self) -> None:
        self.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    try:
        with rclpy.init(args=args):
            node = SimNode()
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as err:
        print(f"sim_node: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

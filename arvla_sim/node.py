"""ROS 2 node ``arvla_sim``: the MuJoCo Panda behaving like a robot behind ros2_control.

Thin adapter around the ROS-free core (env.py, jtc.py, tasks.py):

- subscribes ``/<controller_name>/joint_trajectory`` (trajectory_msgs/JointTrajectory, reliable,
  depth 10) and follows it with joint_trajectory_controller semantics (``jtc.py``: replace on
  arrival, stamp 0 = now, past points dropped, cubic/linear interpolation, hold at the end);
  a rejected message is logged with its reason and the current trajectory continues;
- the controller's joints are ``panda_joint1..7`` + ``panda_finger_joint1`` (the gripper: opening of
  one finger in metres, 0..0.04, the second finger mimics it) -- one 8-joint controller, so a
  policy's 8-D action is one trajectory point;
- publishes ``/clock`` (rosgraph_msgs/Clock) after every controller tick (lock-step: once per
  expert period), ``/joint_states``
  (stamp = sim time), camera ``sensor_msgs/Image`` rgb8 (stamp = sim time of capture),
  ``/sim/success`` (std_msgs/Bool) and the task's instruction (transient local) at each reset;
- ``/sim/reset`` (std_srvs/Trigger) starts the next seeded episode.
- No OpenGL (neither EGL nor OSMesa works): the node logs why and runs without a camera.

Sim time is one monotonic clock over all episodes (an episode's physics restarts at 0, the
published clock does not jump back), so ``use_sim_time`` nodes never see time reverse. The
``task`` parameter switches the task in place (the next episode is the new task's; topics and
clock go on).
Pacing: a wall timer advances physics to ``real_time_factor`` x elapsed wall time (at most a few
ticks per callback so subscriptions stay served); ``real_time_factor: 0`` = short
bursts of ticks (a few ms of wall time each) as fast as the executor allows.

**Lock-step** (``lockstep: true``): the closed loop no longer depends on machine load. Time moves
on the expert's grid (period P = 1 / ``lockstep_control_rate_hz``; episodes start on it), and at
each boundary B the sim

1. captures a camera frame if one is due (stamp B) and holds it; hands perception the frame
   captured at B - k P (k = ``lockstep_perception_steps``) and waits for its ``VLPrefix``;
2. publishes ``/joint_states`` (stamp B), then ``/clock`` = B (no /clock in between: the
   expert's sim-time timer fires once per boundary, at exactly B, whatever its phase) and waits
   for the expert's ``ExpertStatus`` stamped B (published at the end of its tick, after the
   trajectory);
3. steps physics one period (the controller at ``controller_rate_hz``) and goes on with B + P.

Why the expert's tick at B sees exactly the joint state of B and the prefixes captured up to
B - k P: both reach its readers before the /clock message of B (published first; same-process
DDS delivers in the publishing thread), so its executor takes them in the same wait as the clock
or an earlier one, and its timer only becomes ready after the clock callback (rclpy takes one
message per subscription per wait: hence one joint state per period, no queue). A frame reaches
perception only after the expert's tick at B - P was handled, so the prefix cannot arrive before
B either. The trajectory of the tick at B is published before its status, so the sim has it
before it advances; it then starts at B (``stamp`` = B) on the follower's 100 Hz grid.
Each wait ends after ``lockstep_timeout_s`` of wall time even without the message (counted in
``lockstep_timeouts``, logged as a warning: from then on the run depends on timing). What is
left: the ordering argument relies on synchronous same-process delivery (rmw_fastrtps_cpp and
rmw_cyclonedds_cpp deliver locally in the publishing thread); across processes a message could
still overtake another one. ``real_time_factor`` > 0 caps the speed at that factor.
Between boundaries the node keeps serving subscriptions and services; the waits are checked in
a guard condition (woken by the awaited message) and a wall timer (timeouts), never by blocking.
In process, ``set_lockstep_stop(fn)`` holds the sim at a boundary while ``fn()`` is true
(``RolloutGraph`` holds it across its resets and stops episodes at a given sim time, so that
they start and end at the same step whatever the load).

Run: ``sim_node --ros-args --params-file config/sim.yaml``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import sys
import threading
import time
from typing import Any, Callable

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

from arvla_msgs.msg import ExpertStatus, VLPrefix

from arvla_base.config import ConfigError, from_dict
from arvla_base.params import declare_config_parameters
from arvla_base.rosutil import ns_to_stamp, stamp_to_ns
from arvla_sim.config import NODE_NAME, SimNodeConfig
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
LOCKSTEP_POLL_S = 0.005      # lock-step: wall period of the timeout / pacing check
PHYSICS_NS = int(round(PHYSICS_DT * 1e9))


class LockstepPhase(enum.Enum):
    """Where the lock-step sim stands at its current boundary (see the module docstring)."""

    START = "start"      # physics at the boundary, nothing of it published yet (after a step or a reset)
    PREFIX = "prefix"    # a frame was handed to perception: waiting for its VLPrefix
    STATUS = "status"    # /clock of the boundary published: waiting for the expert's tick
    DONE = "done"        # the handshake is complete: may advance one period


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
        self._episode_offset_ns = 0     # sim clock at the start of the episode
        self._physics_steps = 0         # within the episode
        self.slipped_ticks = 0          # ticks that real time wanted but we could not deliver
        self._last_success: bool | None = None
        self.first_success_ns: int | None = None   # first controller tick of the episode with success
        # lock-step state (see the module docstring); the waits are only touched on the executor
        # thread, the stop function under _ls_lock (set from other threads)
        self.lockstep_timeouts = 0      # handshakes given up after lockstep_timeout_s
        self.lockstep_tick_ns = -1      # the last boundary whose handshake completed (or timed out)
        self.lockstep_held = threading.Event()   # set while set_lockstep_stop's function holds the sim
        self._ls_phase = LockstepPhase.START
        self._ls_frames: collections.deque[Image] = collections.deque()   # captured, not yet handed over
        self._ls_await_ns = 0           # stamp of the awaited prefix / status
        self._ls_since = 0.0            # wall time the current wait began
        self._ls_prefix_ns = -1         # newest VLPrefix stamp seen
        self._ls_status_ns = -1         # newest ExpertStatus stamp seen
        self._ls_force = True           # the boundary after a reset publishes everything
        self._ls_lock = threading.Lock()
        self._ls_stop: Callable[[], bool] | None = None

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
        self._ls_wake = None
        self._ls_subs: dict[str, Any] = {}   # what -> the lock-step subscription waiting for it
        if cfg.lockstep:
            reliable = QoSProfile(depth=10, history=QoSHistoryPolicy.KEEP_LAST,
                                  reliability=QoSReliabilityPolicy.RELIABLE)
            if cfg.lockstep_status_topic:
                self._ls_subs["ExpertStatus"] = self.create_subscription(
                    ExpertStatus, cfg.lockstep_status_topic, self._on_status, reliable)
            if cfg.lockstep_prefix_topic:
                self._ls_subs["VLPrefix"] = self.create_subscription(
                    VLPrefix, cfg.lockstep_prefix_topic, self._on_prefix, reliable)
            self._ls_wake = self.create_guard_condition(self._lockstep_run)

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
        if cfg.lockstep:
            period = LOCKSTEP_POLL_S if rtf > 0 else 4 * LOCKSTEP_POLL_S
        self._wall0 = time.monotonic()
        self._sim0_ns = self.now_ns
        self._timer = self.create_timer(period, self._on_timer)   # wall clock (this node never uses sim time)
        mode = (f"lock-step at {cfg.lockstep_control_rate_hz:g} Hz with {cfg.lockstep_status_topic or 'no expert'}, "
                f"perception latency {cfg.lockstep_perception_steps} steps, speed cap " if cfg.lockstep else "")
        self.get_logger().info(
            f"task {cfg.task}: following {cfg.trajectory_topic} at {cfg.controller_rate_hz:g} Hz, joints "
            f"{list(JOINT_NAMES)}; camera {cfg.camera_rate_hz:g} Hz on {cfg.image_topic}; "
            f"{mode}real_time_factor {rtf:g}")

    # ------------------------------------------------------------------ parameters
    def _read_config(self) -> SimNodeConfig:
        """Declare one parameter per config field (all read-only but ``seed`` and ``task``), read
        once, validate."""
        values = declare_config_parameters(self, SimNodeConfig, writable=frozenset({"seed", "task"}))
        try:
            return from_dict(SimNodeConfig, values)
        except ConfigError as err:
            raise ConfigError(f"{self.get_name()} parameter {err}") from err

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        for p in params:
            if p.name == "task" and p.value != self.config.task:
                # The same node, its topics and its clock go on: a replaced node's fresh readers
                # stalled the expert's messages for ~100 s in lock-step (Fast DDS).
                try:
                    cfg = dataclasses.replace(self.config, task=p.value)   # validated
                    env = SimEnv(cfg.env_config())
                except (ConfigError, SimError) as err:
                    return SetParametersResult(successful=False, reason=f"task: {err}")
                self.config, self.env = cfg, env
                self.reset_episode()   # the follower holds the new world's start posture
                self.get_logger().info(f"task {cfg.task}: switched in place")
            elif p.name == "seed":
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
        start_ns = self.now_ns + self.tick_steps * PHYSICS_NS
        if self.config.lockstep:   # on the expert's grid
            period = self.config.lockstep_period_ns
            start_ns = -(-start_ns // period) * period
        self._episode_offset_ns = start_ns
        self._physics_steps = 0
        self.env.reset(seed)
        self.follower.hold(self.env.world.positions(), self.now_ns)
        self._last_success = None
        self.first_success_ns = None
        if self._instr_pub is not None:
            self._instr_pub.publish(String(data=self.env.task.instruction))
        if self.config.lockstep:   # published by the lock-step loop, when not held
            self._ls_frames.clear()
            self._ls_phase, self._ls_force = LockstepPhase.START, True
            if self._ls_wake is not None:
                self._ls_wake.trigger()
        else:
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

    def scripted_expert(self, control_rate_hz: float, motion_profile: str = "trapezoid",
                        grasp_retries: int = 0, speed_jitter: float = 0.0) -> Any:
        """The task's scripted demonstrator (``arvla_sim.experts``, moving with
        ``motion_profile``, trying a missed grasp again up to ``grasp_retries`` times, its
        speeds jittered by ``speed_jitter``),
        stepping its waypoints once per control tick at ``control_rate_hz``; it acts on
        ``demonstrator_view``."""
        from arvla_sim.experts import make_expert

        expert = make_expert(self.env, motion_profile, grasp_retries, speed_jitter)
        expert.dt = 1.0 / control_rate_hz
        return expert

    def demonstrator_view(self) -> tuple[float, dict[str, Any]]:
        """(episode time in s, the task's privileged scene state: object poses, goal). For
        scripted demonstrators only; a policy never sees it."""
        world = self.env.world
        return float(world.time), self.env.task.privileged(world)

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
        if self.config.lockstep:
            self._lockstep_run()
            return
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
        tick_ns = self.tick_steps * PHYSICS_NS
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
        self._step_controller()
        self._publish()

    def _step_controller(self) -> None:
        q_cmd, _ = self.follower.sample(self.now_ns)
        self.env.command(q_cmd)
        self.env.step_physics(self.tick_steps)
        self._physics_steps += self.tick_steps

    def _publish(self, force: bool = False) -> None:
        cfg = self.config
        stamp = ns_to_stamp(self.now_ns)
        self._clock_pub.publish(Clock(clock=stamp))
        steps = self._physics_steps
        if force or steps % cfg.every(cfg.joint_states_rate_hz) == 0:
            self._publish_joint_states(stamp)
        if self._img_pub is not None and (force or steps % cfg.every(cfg.camera_rate_hz) == 0):
            self._img_pub.publish(self._image(stamp))
        self._publish_success(force)

    def _publish_joint_states(self, stamp: Any) -> None:
        js = JointState()
        js.header.stamp = stamp
        js.name = list(JOINT_NAMES)
        js.position = self.env.world.positions().tolist()
        js.velocity = self.env.world.velocities().tolist()
        self._js_pub.publish(js)

    def _publish_success(self, force: bool) -> None:
        """/sim/success on change, with every camera frame (10 Hz without camera) and when forced;
        notes the episode's first success."""
        cfg = self.config
        success = bool(self.env.success())
        if success and self.first_success_ns is None:
            self.first_success_ns = self.now_ns
        status_every = cfg.every(cfg.camera_rate_hz if cfg.camera_rate_hz > 0 else 10.0)
        if force or success != self._last_success or self._physics_steps % status_every == 0:
            self._success_pub.publish(Bool(data=success))
            self._last_success = success

    # ------------------------------------------------------------------ lock-step
    def set_lockstep_stop(self, stop: Callable[[], bool] | None) -> None:
        """Lock-step, in process: hold at a boundary while ``stop()`` is true, checked before
        starting a boundary (nothing of it published yet) and after its handshake (the expert's
        tick there handled). ``lockstep_held`` is set while held. Called from any thread; ``stop``
        runs on the sim's executor thread (reading sim state is safe there). None: never hold."""
        with self._ls_lock:
            self._ls_stop = stop
            self.lockstep_held.clear()
        if self._ls_wake is not None:
            self._ls_wake.trigger()

    def _on_status(self, msg: ExpertStatus) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self._ls_status_ns = max(self._ls_status_ns, stamp)
        if self._ls_phase is LockstepPhase.STATUS and stamp >= self._ls_await_ns:
            self._ls_wake.trigger()

    def _on_prefix(self, msg: VLPrefix) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self._ls_prefix_ns = max(self._ls_prefix_ns, stamp)
        if self._ls_phase is LockstepPhase.PREFIX and stamp >= self._ls_await_ns:
            self._ls_wake.trigger()

    def _lockstep_run(self) -> None:
        """Move the lock-step protocol on as far as it can go now (at most one period of physics)."""
        advanced = False
        while True:
            phase = self._ls_phase
            if phase is LockstepPhase.PREFIX:
                if self._ls_prefix_ns < self._ls_await_ns and not self._ls_timed_out("VLPrefix"):
                    return
                self._ls_publish_boundary()
            elif phase is LockstepPhase.STATUS:
                if self._ls_status_ns < self._ls_await_ns and not self._ls_timed_out("ExpertStatus"):
                    return
                self._ls_phase, self.lockstep_tick_ns = LockstepPhase.DONE, self.now_ns
            elif self._ls_held():
                return
            elif phase is LockstepPhase.START:
                self._ls_start_boundary()
            elif advanced or not self._ls_paced():   # DONE: one period per call, then the executor
                if advanced:
                    self._ls_wake.trigger()
                return
            else:
                for _ in range(self.config.lockstep_period_ns // (self.tick_steps * PHYSICS_NS)):
                    self._step_controller()
                    self._publish_success(False)
                self._ls_phase, advanced = LockstepPhase.START, True

    def _ls_held(self) -> bool:
        with self._ls_lock:
            held = self._ls_stop is not None and bool(self._ls_stop())
            if held:
                self.lockstep_held.set()
            else:
                self.lockstep_held.clear()
        return held

    def _ls_paced(self) -> bool:
        """real_time_factor > 0 caps the lock-step speed (a sim that fell behind does not burst)."""
        rtf = self.config.real_time_factor
        if rtf <= 0:
            return True
        now = time.monotonic()
        wanted = self._sim0_ns + int((now - self._wall0) * rtf * 1e9)
        period = self.config.lockstep_period_ns
        if wanted - self.now_ns > 2 * period:   # behind (slow handshakes, held): go on from here
            self._wall0, self._sim0_ns = now, self.now_ns + period
            return True
        return self.now_ns + period <= wanted

    def _ls_start_boundary(self) -> None:
        """Capture a due frame, hand perception the one captured k periods ago, else publish."""
        cfg = self.config
        now = self.now_ns
        if self._img_pub is not None and (self._ls_force or self._physics_steps % cfg.every(cfg.camera_rate_hz) == 0):
            self._ls_frames.append(self._image(ns_to_stamp(now)))
        latency = cfg.lockstep_perception_steps * cfg.lockstep_period_ns
        handed = -1
        while self._ls_frames and stamp_to_ns(self._ls_frames[0].header.stamp) + latency <= now:
            frame = self._ls_frames.popleft()
            self._img_pub.publish(frame)
            handed = stamp_to_ns(frame.header.stamp)
        if handed >= 0 and cfg.lockstep_prefix_topic:
            self._ls_phase, self._ls_await_ns, self._ls_since = LockstepPhase.PREFIX, handed, time.monotonic()
        else:
            self._ls_publish_boundary()

    def _ls_publish_boundary(self) -> None:
        """Joint states, then the clock of the boundary; then wait for the expert's tick there."""
        cfg = self.config
        now = self.now_ns
        stamp = ns_to_stamp(now)
        if self._ls_force or self._physics_steps % cfg.every(cfg.joint_states_rate_hz) == 0:
            self._publish_joint_states(stamp)
        self._clock_pub.publish(Clock(clock=stamp))
        self._publish_success(self._ls_force)
        self._ls_force = False
        if cfg.lockstep_status_topic:
            self._ls_phase, self._ls_await_ns, self._ls_since = LockstepPhase.STATUS, now, time.monotonic()
        else:
            self._ls_phase, self.lockstep_tick_ns = LockstepPhase.DONE, now

    def _ls_timed_out(self, what: str) -> bool:
        waited = time.monotonic() - self._ls_since
        if waited < self.config.lockstep_timeout_s:
            return False
        self.lockstep_timeouts += 1
        sub = self._ls_subs.get(what)
        matched = (f"; {sub.get_publisher_count()} publisher(s) of {sub.topic_name} matched" if sub else "")
        matched += f", {self._clock_pub.get_subscription_count()} subscription(s) of /clock"
        self.get_logger().warning(
            f"lock-step: no {what} stamped {self._ls_await_ns * 1e-9:.3f} s after {waited:.1f} s wall "
            f"(lockstep_timeout_s): advancing without it ({self.lockstep_timeouts} timeouts so far{matched}; "
            "from here the run depends on timing)")
        return True

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

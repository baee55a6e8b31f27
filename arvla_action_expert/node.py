"""ROS 2 node of the AR action expert: prefixes + joint states in, JointTrajectory out.

Thin by design: callbacks only convert messages into plain values; each control tick calls the
ROS-free rules (``reanchor`` for stamps -> steps -> decision, ``joints`` for reading joint
states by name, ``trajectory`` for a safe JTC trajectory) and the ``ExpertPolicy``.

Per tick (timer on the node clock, so ``use_sim_time`` and bag replay drive it):

1. ``step`` = index of "now" on the episode clock (origin: first tick after start/reset), kept
   strictly increasing because the policy's memory is a FIFO in step order.
2. The newest received prefix, if newer than the one in use: ``capture_step`` from its header
   stamp; from the future -> rejected and counted; wrong model id / dim -> rejected, FAULT
   until a good prefix arrives; else ``policy.refresh_prefix(tokens, capture_step)``.
3. Joint states (by name): none ever -> wait; missing / NaN / implausible (far outside the
   position limits) / older than ``joint_state_timeout`` -> FAULT and hold the last good
   measured position. The policy sees measurements clamped into the limits.
4. ``decide_prefix``: USE / ACTION_ONLY -> ``policy.step`` for ``lookahead_steps`` rows ->
   ``build_plan`` (limits, finite; with ``trajectory_timing`` 'seamless' the first point is the
   one the controller is already moving towards, ``trajectory.seamless_start``) -> publish,
   stamped with the tick time (so the step's latency does not shift the plan); HOLD_STALE -> hold;
   WAIT_MISSING -> publish nothing.
5. ExpertStatus every tick; /diagnostics every ``diagnostics_period`` and on state changes.

Hold = one point at the measured (clamped) position, zero velocity, one period ahead: JTC then
stops the arm where it is. Disabled (``/arvla/enable`` false) = publish nothing, so MoveIt or a
teleop node can own the controller.

The robot's own files: joints from ros2_controllers.yaml, limits with the precedence parameters >
joint_limits.yaml > URDF (``node_config.ExpertNodeConfig.resolve_robot``, which ``arvla
robot-config`` runs too). When a limit is left to the URDF and none is given as a parameter or
file, the node reads ``robot_description`` (transient local, as robot_state_publisher publishes
it) and waits for it (WAITING) before acting. A gripper on its own controller gets the policy's
gripper dimension as a GripperCommand goal or a JointTrajectory (``gripper.py``), rate-limited,
sent without waiting. All names are relative to the node's namespace (two arms: namespace:=left,
namespace:=right), except /diagnostics.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Any, Optional

import numpy as np
import rclpy
from arvla_msgs.msg import ExpertStatus, VLPrefix
from arvla_msgs.srv import ResetMemory
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from arvla_base.config import ConfigError
from arvla_base.params import declare_config_parameters
from arvla_base.policy import StepPolicy, configure_ensembling
from arvla_base.rosutil import ns_to_stamp, stamp_to_ns
from arvla_action_expert.gripper import GripperLimiter, GripperSpec, gripper_target, gripper_trajectory
from arvla_action_expert.joints import (JointError, JointLimits, JointReading, UrdfRobot, implausible_joints,
                                        permutation, read_joints)
from arvla_action_expert.node_config import (NODE_NAME, ExpertNodeConfig, RobotSetup, config_from_parameters)
from arvla_action_expert.reanchor import PrefixDecision, decide_prefix, time_to_step
from arvla_action_expert.trajectory import (KeptPoint, TrajectoryError, TrajectoryPlan, build_plan, hold_plan,
                                           seamless_start)

if typing.TYPE_CHECKING:
    from arvla_action_expert.policy import ExpertPolicy

# A tick whose interval exceeds this many periods counts as late.
LATE_FACTOR = 1.5

_STATE_NAMES = {ExpertStatus.STATE_WAITING: "WAITING", ExpertStatus.STATE_RUNNING: "RUNNING",
                ExpertStatus.STATE_HOLDING: "HOLDING", ExpertStatus.STATE_FAULT: "FAULT",
                ExpertStatus.STATE_DISABLED: "DISABLED"}
_DIAG_LEVEL = {ExpertStatus.STATE_WAITING: DiagnosticStatus.WARN, ExpertStatus.STATE_RUNNING: DiagnosticStatus.OK,
               ExpertStatus.STATE_HOLDING: DiagnosticStatus.WARN, ExpertStatus.STATE_FAULT: DiagnosticStatus.ERROR,
               ExpertStatus.STATE_DISABLED: DiagnosticStatus.OK}


@dataclasses.dataclass(frozen=True)
class ReceivedPrefix:
    """A VLPrefix message as plain values (converted in the callback, judged in the tick)."""

    stamp_ns: int
    frame_seq: int
    model_id: str
    token_count: int
    dim: int
    data: np.ndarray  # (token_count * dim,) float32 as received

    def tokens(self) -> np.ndarray:
        return self.data.reshape(self.token_count, self.dim)  # (N, dim)


def prefix_problem(prefix: ReceivedPrefix, *, model_id: str, prefix_dim: int, max_tokens: int) -> str | None:
    """Why ``prefix`` cannot be used by a policy (None if it can).

    Model ids are compared only when both are set: an empty id means "unknown / any". A zero
    stamp (a producer that never filled the header) gives no capture time to re-anchor on; used,
    it would sit in the policy as a prefix tens of thousands of steps old.
    """
    if prefix.stamp_ns <= 0:
        return f"prefix frame {prefix.frame_seq} has a zero header.stamp: no capture time to re-anchor on"
    if prefix.model_id and model_id and prefix.model_id != model_id:
        return f"prefix model_id '{prefix.model_id}' != policy model_id '{model_id}'"
    if prefix.dim != prefix_dim:
        return f"prefix dim {prefix.dim} != policy prefix_dim {prefix_dim}"
    if not 1 <= prefix.token_count <= max_tokens:
        return f"prefix token_count {prefix.token_count} not in [1, {max_tokens}]"
    if prefix.data.size != prefix.token_count * prefix.dim:
        return (f"prefix data has {prefix.data.size} values, header says {prefix.token_count} x "
                f"{prefix.dim} = {prefix.token_count * prefix.dim}")
    if not np.all(np.isfinite(prefix.data)):
        return "prefix data contains NaN/inf"
    return None


@dataclasses.dataclass
class Counters:
    """Counters since start or the last reset (reported in ExpertStatus and /diagnostics).

    Message counts (``LIFETIME``) survive resets: they describe the topics, not the episode.
    """

    LIFETIME: typing.ClassVar[tuple[str, ...]] = ("prefixes_received", "joint_states_received", "trajectories")

    ticks: int = 0
    late_ticks: int = 0
    dropped_steps: int = 0          # control steps without a tick (the timer fell behind)
    rejected_prefixes: int = 0      # from the future, wrong model/dim, refresh failed
    ignored_old_prefixes: int = 0   # arrived out of order, older than the one in use
    prefixes_used: int = 0
    prefixes_received: int = 0
    joint_states_received: int = 0
    clamped_values: int = 0         # trajectory values moved by position/velocity limits
    trajectories: int = 0
    gripper_goals: int = 0          # goals / trajectories sent to a gripper on its own controller
    gripper_unavailable: int = 0    # gripper goals not sent: its action server was not there


@dataclasses.dataclass(frozen=True)
class TickResult:
    state: int
    reason: str
    plan: Optional[TrajectoryPlan]
    step_latency_s: float = 0.0
    gripper: Optional[tuple[float, np.ndarray]] = None  # (measured, (K,) policy targets) of a gripper output


def robot_description_qos() -> QoSProfile:
    """As robot_state_publisher publishes robot_description: reliable, transient local, depth 1."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def gripper_command_action() -> Any:
    """``control_msgs.action.GripperCommand``, or ConfigError saying what to install or use instead."""
    try:
        from control_msgs.action import GripperCommand
    except ImportError as err:
        raise ConfigError("gripper_command: 'gripper_action' needs control_msgs (ros-<distro>-control-msgs), "
                          f"which is not importable here ({err}); or drive the gripper with a "
                          "joint_trajectory_controller (gripper_command: joint_trajectory)") from err
    return GripperCommand


class GripperOutput:
    """Sends the policy's gripper dimension to the gripper's own controller, never waiting.

    'gripper_action': a ``control_msgs/action/GripperCommand`` goal (``send_goal_async``; an
    absent server is counted, not awaited). control_msgs is imported here, so a node without a
    gripper output never needs it. 'joint_trajectory': a JointTrajectory (``gripper_trajectory``)
    for a second JointTrajectoryController. Either at most ``gripper_rate`` per second and only
    when the target moved more than ``gripper_deadband`` (``GripperLimiter``).
    """

    def __init__(self, node: ActionExpertNode, spec: GripperSpec, cfg: ExpertNodeConfig):
        self.node = node
        self.command = spec.command
        self.max_effort = cfg.gripper_max_effort
        self.limiter = GripperLimiter(cfg.gripper_rate, cfg.gripper_deadband)
        self._client: Any = None
        self._pub: Any = None
        if spec.command == "gripper_action":
            from rclpy.action import ActionClient

            GripperCommand = gripper_command_action()
            self._goal_type = GripperCommand.Goal
            self._client = ActionClient(node, GripperCommand, spec.action_name)
            self.name = node.resolve_topic_name(spec.action_name)  # rclpy Humble and later
        else:
            reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
            self._pub = node.create_publisher(JointTrajectory, spec.topic, reliable)
            self.name = self._pub.topic_name

    def send(self, now_ns: int, spec: GripperSpec, limits: JointLimits, measured: float, rows: np.ndarray,
             period_ns: int) -> None:
        """``limits``: of ``spec.controller_joints``; ``rows``: the policy's targets for the gripper joint."""
        target = gripper_target(rows, limits.subset([spec.joint]))
        if target is None or not self.limiter.due(now_ns, target):
            return
        counters = self.node.counters
        if self._client is not None:
            if not self._client.server_is_ready():
                counters.gripper_unavailable += 1
                return
            goal = self._goal_type()
            goal.command.position, goal.command.max_effort = target, self.max_effort
            self._client.send_goal_async(goal)  # the controller preempts the previous goal
        else:
            try:
                plan = gripper_trajectory(measured, rows, spec, period_ns, limits)
            except TrajectoryError as err:
                self.node.get_logger().warning(f"gripper trajectory rejected: {err}", throttle_duration_sec=5.0)
                return
            self._pub.publish(self.node._trajectory_msg(plan, now_ns, spec.controller_joints))
        self.limiter.sent(now_ns, target)
        counters.gripper_goals += 1


class EpisodeClock:
    """Step indices of control ticks (ROS-free; the node feeds it the node clock's "now").

    Origin ``t0_ns`` = the first tick after start/reset (docs/CONTRACTS.md). The step of a tick
    is ``time_to_step(now)``, but never less than the last step + 1: the policy's memory is a
    FIFO in step order, and a tick that fires early (jitter) must still be a new step. Steps the
    timer skipped (it fell behind) are counted as dropped; an interval above ``LATE_FACTOR``
    periods counts as a late tick. A clock that runs backwards is reported, not absorbed.
    """

    def __init__(self, period_ns: int):
        if period_ns <= 0:
            raise ValueError(f"period_ns must be > 0, got {period_ns}")
        self.period_ns = period_ns
        self.reset()

    def reset(self) -> None:
        self.t0_ns: Optional[int] = None
        self.last_tick_ns: Optional[int] = None
        self.last_step: Optional[int] = None

    def jumped_back(self, now_ns: int) -> bool:
        """True if ``now_ns`` lies before the last tick (bag loop, sim reset)."""
        return self.last_tick_ns is not None and now_ns < self.last_tick_ns

    def tick(self, now_ns: int) -> tuple[int, bool, int]:
        """Register a tick at ``now_ns``: (step, late, dropped steps). Call jumped_back() first."""
        if self.jumped_back(now_ns):
            raise ValueError(f"tick at {now_ns} ns before the last tick at {self.last_tick_ns} ns; reset() first")
        if self.t0_ns is None:
            self.t0_ns = now_ns
        step = time_to_step(now_ns, self.t0_ns, self.period_ns)
        dropped = 0
        if self.last_step is not None:
            dropped = max(0, step - self.last_step - 1)
            step = max(step, self.last_step + 1)
        late = self.last_tick_ns is not None and now_ns - self.last_tick_ns > LATE_FACTOR * self.period_ns
        self.last_tick_ns, self.last_step = now_ns, step
        return step, late, dropped

    def step_of(self, t_ns: int) -> int:
        """Step index of a stamp (a prefix's capture time) on this episode's clock."""
        if self.t0_ns is None:
            raise ValueError("no tick yet: the episode origin is not set")
        return time_to_step(t_ns, self.t0_ns, self.period_ns)


class ActionExpertNode(Node):
    """The AR action expert behind ROS topics (see the module docstring).

    ``policy``: a ``StepPolicy`` (``ExpertPolicy``, ``ChunkPolicy``) to run instead of loading the
    ``checkpoint`` parameter (tests and benchmarks). Raises ``ConfigError`` (bad parameter, naming it) or the policy's
    ``CheckpointError`` at construction: a node that cannot act safely does not start.
    """

    def __init__(self, *, policy: Optional[StepPolicy] = None, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        try:
            self._configure(policy)
        except BaseException:
            self.destroy_node()
            raise

    # ---- configuration ------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        """All parameters in one block: name, default/type and description from ExpertNodeConfig.
        Scalars are dynamically typed so that "control_rate: 50" works like 50.0; ExpertNodeConfig
        then checks the type and names the key. Read-only: values are read once at start."""
        return declare_config_parameters(self, ExpertNodeConfig, dynamic_scalars=True)

    def _configure(self, policy: Optional[StepPolicy]) -> None:
        self.config: ExpertNodeConfig = config_from_parameters(self._declare_parameters())
        cfg = self.config
        # Joints and limits from the parameters and the robot's files; when a limit is left to a
        # URDF that only the robot_description topic can give, wait for it (setup None until then).
        self.setup: Optional[RobotSetup] = None
        self.limits: Optional[JointLimits] = None        # the arm controller's joints
        self.state_limits: Optional[JointLimits] = None  # the policy's joints (arm, then gripper)
        self._setup_problem: Optional[str] = None        # the robot_description received is unusable
        self._description_text: Optional[str] = None     # the one the limits were taken from
        urdf = cfg.urdf()
        wait = urdf is None and bool(cfg.robot_description_topic) and cfg.needs_robot_description()
        if wait:
            self.joints: list[str] = cfg.controller_joints()
            self.gripper_spec: Optional[GripperSpec] = cfg.gripper(None, strict=False)
        else:
            setup = cfg.resolve_robot(urdf)
            self.joints, self.gripper_spec = list(setup.joints), setup.gripper
        self.state_joints: list[str] = self.joints + ([self.gripper_spec.joint] if self.gripper_spec else [])
        if not wait:
            self._apply_setup(setup)
        self.policy: StepPolicy = policy if policy is not None else self._load_policy(cfg)
        self._check_policy_fits(self.policy)
        # A new node is a new episode: a policy object handed over from a previous node (an
        # in-process restart) still holds that node's memory, whose steps would not follow ours.
        self.policy.reset()
        self._period_ns = cfg.period_ns

        # run-time state (all reset by _reset_memory)
        self.counters = Counters()
        self._enabled = cfg.enabled_at_start
        self.episode_clock = EpisodeClock(self._period_ns)
        self._pending: Optional[ReceivedPrefix] = None     # newest received, not yet judged
        self._prefix: Optional[ReceivedPrefix] = None      # in the policy's prefix slot
        self._capture_step: Optional[int] = None
        self._prefix_fault: Optional[str] = None           # last received prefix was bad
        self._joint: Optional[tuple[JointReading, int]] = None  # (reading, receipt time ns)
        self._last_good: Optional[np.ndarray] = None       # last complete finite position
        self._last_state: Optional[int] = None
        self._last_diag_ns: Optional[int] = None
        self._refresh_latency_s = 0.0                      # last prefix encoding (inside a tick)
        self._sent: Optional[tuple[int, TrajectoryPlan]] = None  # (stamp ns, plan) last published

        reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
        newest = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1)
        self._traj_pub = self.create_publisher(JointTrajectory, cfg.trajectory_topic, reliable)
        self._status_pub = self.create_publisher(ExpertStatus, cfg.status_topic, reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(VLPrefix, cfg.prefix_topic, self._on_prefix, newest)
        self.create_subscription(JointState, cfg.joint_states_topic, self._on_joint_state, qos_profile_sensor_data)
        self.create_service(ResetMemory, cfg.reset_service, self._on_reset)
        self.create_service(SetBool, cfg.enable_service, self._on_enable)
        self._gripper_out = GripperOutput(self, self.gripper_spec, cfg) if self.gripper_spec is not None else None
        self._description_sub = None
        if wait:
            self._description_sub = self.create_subscription(String, cfg.robot_description_topic,
                                                             self._on_robot_description, robot_description_qos())
            self.get_logger().info(f"limits left to the URDF: waiting for it on {self._description_sub.topic_name}")
        self._timer = self.create_timer(self._period_ns * 1e-9, self._on_tick)  # node clock
        self.get_logger().info(
            f"action expert ready: {cfg.control_rate:g} Hz, lookahead {cfg.lookahead_steps}, "
            f"trajectory_timing {cfg.trajectory_timing}, "
            f"joints {self.joints} -> {self._traj_pub.topic_name}, max_staleness {cfg.max_staleness} steps, "
            + (f"gripper {self.gripper_spec.joint} -> {self._gripper_out.name}, " if self._gripper_out else "") +
            f"model_id '{self.policy.model_id}', memory window {self.policy.cache_capacity}"
            + ("" if self._enabled else " (disabled until /arvla/enable)"))

    def _apply_setup(self, setup: RobotSetup) -> None:
        """Take the resolved joints and limits (at start, or when robot_description arrives)."""
        if list(setup.joints) != self.joints or setup.state_joints != self.state_joints:
            raise ConfigError(f"joints: the robot_description changes the joints from {self.state_joints} to "
                              f"{setup.state_joints}")
        self.setup, self.gripper_spec = setup, setup.gripper
        self.limits, self.state_limits = setup.limits, setup.state_limits
        log = self.get_logger()
        for line in setup.describe():
            log.info(line)
        for note in setup.resolution.notes:
            log.warning(f"joint limits: {note}")

    def _on_robot_description(self, msg: String) -> None:
        """The URDF from robot_state_publisher: resolve the limits once (a later, different one is
        reported and ignored: limits do not change under a running policy; restart to apply it)."""
        if self.setup is not None:
            if self._description_text is not None and msg.data != self._description_text:
                self.get_logger().warning("robot_description changed: the limits taken at start are kept "
                                          "(restart the node to apply it)", throttle_duration_sec=60.0)
            return
        origin = f"topic {self._description_sub.topic_name if self._description_sub else 'robot_description'}"
        try:
            self._apply_setup(self.config.resolve_robot(UrdfRobot.from_xml(msg.data, origin)))
        except (ConfigError, JointError) as err:
            self._setup_problem = f"robot_description unusable: {err}"
            self.get_logger().error(self._setup_problem)
            return
        self._description_text = msg.data
        self._setup_problem = None
        if self._last_good is None and self._joint is not None:
            self._on_reading(self._joint[0])

    @staticmethod
    def _load_policy(cfg: ExpertNodeConfig) -> ExpertPolicy:
        if not cfg.checkpoint:
            raise ConfigError("checkpoint: no checkpoint given; set the 'checkpoint' parameter to a "
                              "trained expert (arvla train)")
        from arvla_action_expert.policy import ExpertPolicy

        policy = ExpertPolicy.from_checkpoint(cfg.checkpoint, device=cfg.device)
        if cfg.inference == "int8":
            policy.quantize()
        elif cfg.inference in ("onnx", "onnx_int8"):
            try:
                policy.use_onnx(int8=cfg.inference == "onnx_int8", threads=max(cfg.torch_threads, 1))
            except ImportError as err:
                raise ConfigError(f"inference: '{cfg.inference}' needs onnx and onnxruntime ({err})") from err
        elif cfg.inference in ("cuda_graph", "cuda_graph_bf16"):
            try:
                policy.use_cuda_graph(bf16=cfg.inference == "cuda_graph_bf16")
            except ValueError as err:
                raise ConfigError(f"inference: {err}") from err
        return policy

    def _check_policy_fits(self, policy: StepPolicy) -> None:
        cfg = self.config
        if abs(policy.control_rate_hz - cfg.control_rate) > 1e-6 * cfg.control_rate:
            raise ConfigError(f"control_rate: {cfg.control_rate:g} Hz, but the policy was trained at "
                              f"{policy.control_rate_hz:g} Hz (one AR step = one control period)")
        # The policy's dimensions are the state joints: the arm controller's, then a gripper on
        # its own controller. _to_controller picks the arm's columns of the policy's output.
        order = self.state_joints
        if policy.joint_names:
            try:
                self._to_policy = permutation(order, policy.joint_names)
                to_state = permutation(policy.joint_names, order)
            except JointError as err:
                raise ConfigError(f"joints: controller joints {order} do not match the policy's "
                                  f"joint_names {policy.joint_names}") from err
        else:
            self._to_policy = to_state = np.arange(len(order))
        self._to_controller = to_state[:len(self.joints)]
        self._gripper_col: Optional[int] = int(to_state[len(self.joints)]) if len(order) > len(self.joints) else None
        if not policy.state_dim == policy.action_dim == len(order):
            raise ConfigError(f"joints: {len(order)} controller joints, but the policy has state_dim "
                              f"{policy.state_dim} and action_dim {policy.action_dim}")
        from arvla_action_expert.policy import MAX_LOOKAHEAD

        if cfg.lookahead_steps > MAX_LOOKAHEAD + 1:
            raise ConfigError(f"lookahead_steps: {cfg.lookahead_steps} > the policy's limit {MAX_LOOKAHEAD + 1}")
        configure_ensembling(policy, cfg.ensemble_steps, cfg.ensemble_m)

    # ---- callbacks: convert only --------------------------------------------------------------

    def _on_prefix(self, msg: VLPrefix) -> None:
        self.counters.prefixes_received += 1
        prefix = ReceivedPrefix(stamp_to_ns(msg.header.stamp), int(msg.frame_seq), msg.model_id,
                                int(msg.token_count), int(msg.dim), np.asarray(msg.data, dtype=np.float32))
        if self._pending is None or prefix.stamp_ns > self._pending.stamp_ns:
            self._pending = prefix
        else:
            self.counters.ignored_old_prefixes += 1

    def _on_joint_state(self, msg: JointState) -> None:
        self.counters.joint_states_received += 1
        reading = read_joints(msg.name, msg.position, self.state_joints)
        self._joint = (reading, self.get_clock().now().nanoseconds)
        self._on_reading(reading)

    def _on_reading(self, reading: JointReading) -> None:
        if self.state_limits is not None and reading.ok and not implausible_joints(reading.positions,
                                                                                   self.state_limits):
            self._last_good = reading.positions

    def _on_reset(self, request: ResetMemory.Request, response: ResetMemory.Response) -> ResetMemory.Response:
        self._reset_memory(clear_prefix=request.clear_prefix)
        what = "memory and prefix" if request.clear_prefix else "memory (prefix kept)"
        self.get_logger().info(f"reset: {what} cleared by service")
        response.success, response.message = True, f"cleared {what}"
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data and not self._enabled:
            # The arm may have been moved by someone else meanwhile: the old memory no longer
            # describes this episode, so start a new one (the prefix in use stays valid).
            self._reset_memory(clear_prefix=False)
        self._enabled = bool(request.data)
        self.get_logger().info("enabled" if self._enabled else "disabled: publishing no commands")
        response.success = True
        response.message = "enabled (memory reset)" if self._enabled else "disabled"
        return response

    # ---- memory -------------------------------------------------------------------------------

    def _reset_memory(self, *, clear_prefix: bool) -> None:
        """New episode: policy memory cleared, step origin re-taken at the next tick.

        A kept prefix is re-installed at the next tick, its capture step recomputed against
        the new origin (the policy's reset clears its prefix slot too).
        """
        self.policy.reset()
        if not clear_prefix and self._prefix is not None:
            if self._pending is None or self._pending.stamp_ns <= self._prefix.stamp_ns:
                self._pending = self._prefix
        if clear_prefix:
            self._pending = None
        self._prefix = None
        self._capture_step = None
        self._prefix_fault = None
        self._sent = None
        if self._gripper_out is not None:
            self._gripper_out.limiter.reset()
        self.episode_clock.reset()
        self.counters = Counters(**{k: getattr(self.counters, k) for k in Counters.LIFETIME})

    # ---- the control tick ---------------------------------------------------------------------

    def _on_tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if now_ns == 0:  # use_sim_time and no /clock yet
            return
        if self.episode_clock.jumped_back(now_ns):
            back_s = (self.episode_clock.last_tick_ns or 0) * 1e-9 - now_ns * 1e-9
            self.get_logger().warning(
                f"clock jumped back {back_s:.3f} s (bag loop / sim reset): memory and prefix reset, "
                "waiting for fresh joint states")
            self._reset_memory(clear_prefix=True)
            self._joint = None
            self._last_good = None
        step, late, dropped = self.episode_clock.tick(now_ns)
        self.counters.late_ticks += int(late)
        self.counters.dropped_steps += dropped
        self.counters.ticks += 1

        if not self._enabled:
            result = TickResult(ExpertStatus.STATE_DISABLED, "disabled by service", None)
        else:
            self._take_pending_prefix(step)
            result = self._act(now_ns, step)
        if result.plan is not None:
            stamp_ns = 0 if self.config.trajectory_timing == "arrival" else now_ns
            self._traj_pub.publish(self._trajectory_msg(result.plan, stamp_ns))
            self._sent = (stamp_ns, result.plan)
            self.counters.trajectories += 1
        else:
            self._sent = None  # nothing of ours is being executed any more (or soon will not be)
        if result.gripper is not None and self._gripper_out is not None and self.setup is not None:
            assert self.gripper_spec is not None and self.setup.gripper_limits is not None
            self._gripper_out.send(now_ns, self.gripper_spec, self.setup.gripper_limits, *result.gripper,
                                   self._period_ns)
        self._publish_status(now_ns, step, result)

    def _take_pending_prefix(self, step: int) -> None:
        """Judge the newest received prefix; install it in the policy if usable and newer."""
        prefix, self._pending = self._pending, None
        if prefix is None:
            return
        if self._prefix is not None and prefix.stamp_ns <= self._prefix.stamp_ns:
            self.counters.ignored_old_prefixes += 1
            return
        problem = prefix_problem(prefix, model_id=self.policy.model_id, prefix_dim=self.policy.prefix_dim,
                                 max_tokens=self.policy.config.max_prefix_tokens)
        if problem is not None:
            self.counters.rejected_prefixes += 1
            self._prefix_fault = problem
            return
        capture = self.episode_clock.step_of(prefix.stamp_ns)
        decision = decide_prefix(step, capture, max_staleness=self.config.max_staleness,
                                 allow_action_only=self.config.allow_action_only,
                                 future_tolerance=self.config.future_tolerance)
        if decision is PrefixDecision.REJECT_FUTURE:
            self.counters.rejected_prefixes += 1
            self.get_logger().warning(
                f"prefix frame {prefix.frame_seq} is from the future: capture step {capture} > step {step} "
                f"(+{self.config.future_tolerance} tolerance); rejected", throttle_duration_sec=5.0)
            return
        start = time.perf_counter()
        try:
            self.policy.refresh_prefix(prefix.tokens(), capture)
            self._refresh_latency_s = time.perf_counter() - start
        except (ValueError, RuntimeError) as err:
            self.counters.rejected_prefixes += 1
            self._prefix_fault = f"prefix refresh failed: {err}"
            return
        self._prefix, self._capture_step, self._prefix_fault = prefix, capture, None
        self.counters.prefixes_used += 1

    def _act(self, now_ns: int, step: int) -> TickResult:
        fault = ExpertStatus.STATE_FAULT
        if self.state_limits is None or self.limits is None:
            if self._setup_problem is not None:
                return TickResult(fault, self._setup_problem, None)
            topic = self._description_sub.topic_name if self._description_sub else "robot_description"
            return TickResult(ExpertStatus.STATE_WAITING, f"waiting for the URDF on {topic} (joint limits not "
                                                          "given by parameters or joint_limits_yaml)", None)
        n_arm = len(self.joints)
        if self._joint is None:
            return TickResult(ExpertStatus.STATE_WAITING, "no /joint_states received yet", None)
        reading, received_ns = self._joint
        if received_ns == 0:  # arrived before the first /clock (use_sim_time): count it from now
            received_ns = now_ns
            self._joint = (reading, now_ns)
        age_s = (now_ns - received_ns) * 1e-9
        if age_s > self.config.joint_state_timeout:
            return self._hold(fault, f"joint_states stale: last one {age_s:.3f} s ago > "
                                     f"joint_state_timeout {self.config.joint_state_timeout:g} s")
        if not reading.ok:
            return self._hold(fault, reading.problem or "bad joint_states")
        implausible = implausible_joints(reading.positions, self.state_limits)
        if implausible:
            values = {n: float(reading.positions[self.state_joints.index(n)]) for n in implausible}
            return self._hold(fault, f"joint_states implausible: {values} far outside the position limits")
        if self._prefix_fault is not None:
            return self._hold(fault, self._prefix_fault)
        decision = decide_prefix(step, self._capture_step, max_staleness=self.config.max_staleness,
                                 allow_action_only=self.config.allow_action_only,
                                 future_tolerance=self.config.future_tolerance)
        if decision is PrefixDecision.WAIT_MISSING:
            return TickResult(ExpertStatus.STATE_WAITING, "no prefix received yet", None)
        if decision is PrefixDecision.HOLD_STALE:
            assert self._capture_step is not None
            return self._hold(ExpertStatus.STATE_HOLDING,
                              f"prefix stale: {step - self._capture_step} steps > max_staleness "
                              f"{self.config.max_staleness}")
        if decision is PrefixDecision.REJECT_FUTURE:  # only after a clock jump not caught above
            return self._hold(fault, "prefix in use lies in the future")

        measured = reading.positions
        # Within the plausibility margin but outside a limit (noise, overshoot): the policy sees
        # the clamped value, as the trajectory builder does; its memory never holds such outliers.
        observed = np.clip(measured, self.state_limits.lower, self.state_limits.upper)
        start = time.perf_counter()
        try:
            targets = self.policy.step(observed[self._to_policy], step, self.config.lookahead_steps)
        except (ValueError, RuntimeError) as err:
            return self._hold(fault, f"model error: {err}", time.perf_counter() - start)
        latency = time.perf_counter() - start
        try:
            plan = build_plan(measured[:n_arm], targets[:, self._to_controller], self._period_ns, self.limits,
                              keep=self._first_point(now_ns, measured[:n_arm]))
        except TrajectoryError as err:
            return self._hold(fault, f"trajectory rejected: {err}", latency)
        if plan.n_nonfinite:
            return self._hold(fault, f"model output has {plan.n_nonfinite} NaN/inf values", latency)
        self.counters.clamped_values += plan.n_clamped
        reason = "action-only (no prefix yet)" if decision is PrefixDecision.ACTION_ONLY else ""
        gripper = None if self._gripper_col is None else (float(measured[n_arm]), targets[:, self._gripper_col])
        return TickResult(ExpertStatus.STATE_RUNNING, reason, plan, latency, gripper)

    def _first_point(self, now_ns: int, measured: np.ndarray) -> Optional[KeptPoint]:
        """With ``trajectory_timing`` 'seamless': the plan's first point (``seamless_start``);
        else None (row 0 of the policy starts the plan)."""
        if self.config.trajectory_timing != "seamless":
            return None
        assert self.limits is not None
        return seamless_start(self._sent, now_ns, measured, self._period_ns, self.limits)

    def _hold(self, state: int, reason: str, latency: float = 0.0) -> TickResult:
        """Hold the last good measured position (nothing to hold on if there never was one)."""
        if self._last_good is None:
            return TickResult(state, reason + " (no valid joint state yet: publishing nothing)", None, latency)
        assert self.limits is not None
        return TickResult(state, reason, hold_plan(self._last_good[:len(self.joints)], self._period_ns, self.limits),
                          latency)

    # ---- output messages ----------------------------------------------------------------------

    def _trajectory_msg(self, plan: TrajectoryPlan, stamp_ns: int,
                        joint_names: Optional[typing.Sequence[str]] = None) -> JointTrajectory:
        """``stamp_ns`` 0: JTC starts the plan on arrival; else the plan's times count from it.
        ``joint_names``: default the arm controller's joints."""
        msg = JointTrajectory()
        if stamp_ns > 0:
            ns_to_stamp(stamp_ns, msg.header.stamp)
        msg.joint_names = list(self.joints if joint_names is None else joint_names)
        for t_ns, pos, vel in zip(plan.times_ns.tolist(), plan.positions, plan.velocities):
            point = JointTrajectoryPoint()
            point.positions = pos.tolist()
            point.velocities = vel.tolist()
            sec, nanosec = divmod(int(t_ns), 1_000_000_000)
            point.time_from_start = Duration(sec=sec, nanosec=nanosec)
            msg.points.append(point)
        return msg

    def _publish_status(self, now_ns: int, step: int, result: TickResult) -> None:
        c = self.counters
        msg = ExpertStatus()
        ns_to_stamp(now_ns, msg.header.stamp)  # the tick's time (its start), not when it finished
        msg.state, msg.reason, msg.step = result.state, result.reason, step
        if self._prefix is not None and self._capture_step is not None:
            msg.prefix_capture_step = self._capture_step
            msg.staleness_steps = step - self._capture_step
            msg.staleness_sec = (now_ns - self._prefix.stamp_ns) * 1e-9
            msg.prefix_frame_seq = self._prefix.frame_seq
        else:
            msg.staleness_steps, msg.staleness_sec = -1, -1.0
        msg.cache_fill, msg.cache_capacity = self.policy.cache_fill, self.policy.cache_capacity
        msg.step_latency_sec = result.step_latency_s
        msg.ticks, msg.late_ticks, msg.rejected_prefixes = c.ticks, c.late_ticks, c.rejected_prefixes
        self._status_pub.publish(msg)

        changed = result.state != self._last_state
        if changed and result.state in (ExpertStatus.STATE_FAULT, ExpertStatus.STATE_HOLDING):
            self.get_logger().warning(f"{_STATE_NAMES[result.state]}: {result.reason}")
        elif changed:
            self.get_logger().info(f"{_STATE_NAMES[result.state]} {result.reason}".rstrip())
        self._last_state = result.state
        last = self._last_diag_ns
        if changed or last is None or not 0 <= now_ns - last < self.config.diagnostics_period * 1e9:
            self._last_diag_ns = now_ns
            self._diag_pub.publish(self._diagnostics(msg))

    def _diagnostics(self, status: ExpertStatus) -> DiagnosticArray:
        c = self.counters
        diag = DiagnosticStatus(level=_DIAG_LEVEL[status.state], name=f"{self.get_name()}: action expert",
                                hardware_id=self.config.controller_name)
        diag.message = _STATE_NAMES[status.state] + (f": {status.reason}" if status.reason else "")
        values = {"state": _STATE_NAMES[status.state], "reason": status.reason, "step": status.step,
                  "staleness_steps": status.staleness_steps, "staleness_sec": f"{status.staleness_sec:.4f}",
                  "prefix_frame_seq": status.prefix_frame_seq,
                  "cache_fill": f"{status.cache_fill}/{status.cache_capacity}",
                  "step_latency_ms": f"{status.step_latency_sec * 1e3:.3f}",
                  "prefix_refresh_ms": f"{self._refresh_latency_s * 1e3:.3f}", "enabled": self._enabled,
                  **dataclasses.asdict(c)}
        diag.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        out = DiagnosticArray()
        out.header.stamp = status.header.stamp
        out.status = [diag]
        return out


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``action_expert_node``: run until Ctrl-C; exit 1 if configuration fails."""
    from arvla_action_expert.checkpoint import CheckpointError

    try:
        with rclpy.init(args=args):
            try:
                node = ActionExpertNode()
            except (ConfigError, CheckpointError) as err:
                rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")
                return 1
            if node.config.torch_threads > 0:
                import torch

                torch.set_num_threads(node.config.torch_threads)
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""In-process ROS harness for the action expert node: a manual /clock, real topics and services.

The expert runs with ``use_sim_time``; the harness publishes /clock one control period at a
time, so every tick happens at an exact, known time and step. A fake joint_trajectory_controller
node checks every JointTrajectory it receives against JTC's rules and the joint limits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np

PERIOD_NS = 50_000_000  # 20 Hz
T_START_NS = 1_000 * 1_000_000_000  # sim time of the first tick (an arbitrary non-zero origin)
JOINTS = ["j1", "j2", "j3"]
LOWER = [-1.0, -2.0, -0.5]
UPPER = [1.0, 2.0, 0.5]
VMAX = [1.0, 2.0, 0.5]
PREFIX_DIM = 8
MODEL_ID = "test-backbone@v1"
SPIN_TIMEOUT_S = 10.0


def tiny_policy(*, model_id: str = MODEL_ID, joint_names=(), control_rate_hz: float = 20.0, seed: int = 0,
                dims: int = 0):
    """A random-weight expert small enough to build in milliseconds (plumbing, not skill).
    ``dims``: state/action dimensions (default: len(joint_names), else 3)."""
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy

    dims = dims or len(joint_names) or 3
    cfg = ExpertConfig(state_dim=dims, action_dim=dims, prefix_dim=PREFIX_DIM, max_prefix_tokens=4, n_embd=16,
                       n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    return ExpertPolicy.build_untrained(cfg, seed=seed, control_rate_hz=control_rate_hz, model_id=model_id,
                                        joint_names=joint_names)


def base_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = dict(use_sim_time=True, control_rate=20.0, lookahead_steps=4, joints=JOINTS,
                                  position_min=LOWER, position_max=UPPER, max_velocity=VMAX, max_staleness=3,
                                  joint_state_timeout=0.3, diagnostics_period=0.0)
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}  # None: leave the parameter unset


class FakeJTC:
    """Subscribes like joint_trajectory_controller and records every rule a message breaks."""

    def __init__(self, node: Any, topic: str, joints: list[str], lower: list[float], upper: list[float],
                 vmax: list[float], clock_ns: Callable[[], int] = lambda: 0):
        from trajectory_msgs.msg import JointTrajectory
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.clock_ns = clock_ns  # the sim time of the tick being handled
        self.joints, self.lower, self.upper, self.vmax = joints, lower, upper, vmax
        self.messages: list[Any] = []
        self.violations: list[str] = []
        node.create_subscription(JointTrajectory, topic, self._check,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

    def _check(self, msg: Any) -> None:
        n = len(self.messages)
        self.messages.append(msg)
        bad = self.violations.append
        if list(msg.joint_names) != self.joints:
            bad(f"#{n}: joint_names {list(msg.joint_names)} != {self.joints}")
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp_ns not in (0, self.clock_ns()):  # 0 = start on arrival; else the tick's time
            bad(f"#{n}: header stamp {stamp_ns} ns is neither 0 nor the tick time {self.clock_ns()} ns")
        if not msg.points:
            bad(f"#{n}: no points")
            return
        last_t = 0
        for k, p in enumerate(msg.points):
            t = p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec
            if t <= last_t:
                bad(f"#{n}: point {k} time {t} ns not after {last_t} ns")
            last_t = t
            if len(p.positions) != len(self.joints) or len(p.velocities) != len(self.joints):
                bad(f"#{n}: point {k} has {len(p.positions)} positions, {len(p.velocities)} velocities")
                continue
            for j, (q, v) in enumerate(zip(p.positions, p.velocities)):
                if not (math.isfinite(q) and math.isfinite(v)):
                    bad(f"#{n}: point {k} joint {j} not finite: {q}, {v}")
                elif not self.lower[j] <= q <= self.upper[j]:
                    bad(f"#{n}: point {k} joint {j} position {q} outside [{self.lower[j]}, {self.upper[j]}]")
                elif abs(v) > self.vmax[j]:
                    bad(f"#{n}: point {k} joint {j} velocity {v} above {self.vmax[j]}")
        if any(v != 0.0 for v in msg.points[-1].velocities):
            bad(f"#{n}: last point velocity {list(msg.points[-1].velocities)} not zero")


@dataclasses.dataclass
class Tick:
    status: Any
    trajectory: Optional[Any]  # the JointTrajectory published this tick, if any


class Harness:
    """Drives one ActionExpertNode: clock, joint states, prefixes in; status, trajectories out."""

    def __init__(self, ctx: Any, executor: Any, *, policy: Any = "tiny", namespace: str = "",
                 jtc: Optional[tuple[str, list[str], list[float], list[float], list[float]]] = None, **params: Any):
        """``policy``: an ExpertPolicy, "tiny" (a fresh tiny_policy()) or None (load ``checkpoint``).
        ``namespace``: of the node (its topics are relative); ``jtc``: (topic relative to it,
        joints, lower, upper, vmax) the fake controller checks (default: arm_controller, the
        parameters' joints and limits)."""
        from arvla_msgs.msg import ExpertStatus, VLPrefix
        from arvla_msgs.srv import ResetMemory
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState
        from std_srvs.srv import SetBool

        from arvla_action_expert.node import ActionExpertNode

        self.executor = executor
        self.policy = tiny_policy() if isinstance(policy, str) else policy
        params = base_params(**params)
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = ActionExpertNode(policy=self.policy, context=ctx, parameter_overrides=overrides,
                                     namespace=namespace)
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.ns = ns
        self.driver = Node("expert_test_driver", namespace=ns or None, context=ctx)
        self.clock_pub = self.driver.create_publisher(Clock, "/clock", 10)
        self.js_pub = self.driver.create_publisher(JointState, f"{ns}/joint_states", qos_profile_sensor_data)
        self.prefix_pub = self.driver.create_publisher(VLPrefix, f"{ns}/arvla/vl_prefix",
                                                       QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.statuses: list[Any] = []
        self.driver.create_subscription(ExpertStatus, f"{ns}/arvla/expert_status", self.statuses.append,
                                        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        if jtc is None:
            jtc = ("arm_controller/joint_trajectory", JOINTS, params["position_min"], params["position_max"],
                   params["max_velocity"])
        self.jtc_topic = f"{ns}/{jtc[0]}"
        self.jtc = FakeJTC(self.driver, self.jtc_topic, *jtc[1:], clock_ns=lambda: self.now_ns)
        self.reset_client = self.driver.create_client(ResetMemory, f"{ns}/arvla/reset_memory")
        self.enable_client = self.driver.create_client(SetBool, f"{ns}/arvla/enable")
        executor.add_node(self.node)
        executor.add_node(self.driver)
        self.now_ns = T_START_NS
        self.frame_seq = 0
        self._wait(lambda: self.prefix_pub.get_subscription_count() > 0 and self.js_pub.get_subscription_count() > 0
                   and self.jtc_ready(), "discovery")

    # -- plumbing
    def jtc_ready(self) -> bool:
        return self.driver.count_publishers(self.jtc_topic) > 0

    def _wait(self, pred: Callable[[], bool], what: str) -> None:
        from arvla_base.rosutil import spin_until

        if not spin_until(self.executor, pred, SPIN_TIMEOUT_S, step_s=0.002):
            raise AssertionError(f"timed out waiting for {what}")

    # -- inputs
    def joint_state(self, positions: dict[str, float]) -> None:
        from sensor_msgs.msg import JointState

        msg = JointState()
        msg.name = list(positions)
        msg.position = [float(v) for v in positions.values()]
        before = self.node.counters.joint_states_received
        self.js_pub.publish(msg)
        self._wait(lambda: self.node.counters.joint_states_received > before, "joint state delivery")

    def prefix(self, capture_ns: int, *, model_id: str = MODEL_ID, dim: int = PREFIX_DIM, tokens: int = 2,
               data: Optional[np.ndarray] = None) -> int:
        from arvla_msgs.msg import VLPrefix
        from arvla_base.rosutil import ns_to_stamp

        self.frame_seq += 1
        msg = VLPrefix()
        ns_to_stamp(capture_ns, msg.header.stamp)
        msg.frame_seq, msg.model_id, msg.token_count, msg.dim = self.frame_seq, model_id, tokens, dim
        if data is None:
            data = np.random.default_rng(self.frame_seq).standard_normal(tokens * dim).astype(np.float32)
        msg.data = np.asarray(data, np.float32).tolist()
        before = self.node.counters.prefixes_received
        self.prefix_pub.publish(msg)
        self._wait(lambda: self.node.counters.prefixes_received > before, "prefix delivery")
        return self.frame_seq

    def step_time(self, step: int) -> int:
        """Sim time of control step ``step`` (the first tick, at T_START_NS, is step 0)."""
        return T_START_NS + step * PERIOD_NS

    def set_clock(self, t_ns: int) -> None:
        from rosgraph_msgs.msg import Clock
        from arvla_base.rosutil import ns_to_stamp

        msg = Clock()
        ns_to_stamp(t_ns, msg.clock)
        self.now_ns = t_ns
        self.clock_pub.publish(msg)

    def set_clock_and_wait(self, t_ns: int) -> None:
        """Publish /clock and wait until the expert's clock shows it (a tick may or may not run)."""
        self.set_clock(t_ns)
        self._wait(lambda: self.node.get_clock().now().nanoseconds == t_ns, f"clock at {t_ns} ns")

    def tick(self, t_ns: Optional[int] = None) -> Tick:
        """Publish /clock (default: one period later; the first call: T_START_NS) and wait for the tick."""
        if t_ns is None:
            t_ns = self.now_ns + PERIOD_NS if self.statuses else T_START_NS
        n_status, n_traj = len(self.statuses), len(self.jtc.messages)
        self.set_clock(t_ns)
        self._wait(lambda: len(self.statuses) > n_status, f"a tick at {t_ns} ns")
        status = self.statuses[-1]
        assert len(self.statuses) == n_status + 1, "more than one tick for one clock period"
        # The node counts what it published; wait until the fake JTC has all of it.
        self._wait(lambda: len(self.jtc.messages) >= self.node.counters.trajectories,
                   "trajectory delivery")
        traj = self.jtc.messages[-1] if len(self.jtc.messages) > n_traj else None
        assert len(self.jtc.messages) <= n_traj + 1, "more than one trajectory in one tick"
        return Tick(status, traj)

    def call(self, client: Any, request: Any) -> Any:
        self._wait(lambda: client.service_is_ready(), "service")
        future = client.call_async(request)
        self._wait(future.done, "service response")
        return future.result()

"""The expert node on real-format robot files, in process, with real messages.

UR-like: joints from a ros2_controllers.yaml with $(var tf_prefix) and a
scaled_joint_trajectory_controller, limits from MoveIt's joint_limits.yaml + the URDF read from
/robot_description (transient local) with a continuous wrist. Panda-like: URDF file, MoveIt's
robot_description_planning joint_limits.yaml, the hand on its own controller (a second JTC or a
GripperActionController). Two arms in one graph by namespace.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import robot_files as rf
from arvla_base.rosutil import spin_until
from expert_harness import FakeJTC, tiny_policy

UNSET = dict(joints=None, position_min=None, position_max=None, max_velocity=None)


def _publish_description(node, topic: str, text: str):
    from std_msgs.msg import String

    from arvla_action_expert.node import robot_description_qos

    pub = node.create_publisher(String, topic, robot_description_qos())
    pub.publish(String(data=text))
    return pub


def test_ur_like_node_waits_for_robot_description_then_runs_inside_its_limits(make_harness, tmp_path):
    from arvla_msgs.msg import ExpertStatus

    files = rf.ur_files(tmp_path)
    lower = [-2 * math.pi] * 5 + [-math.inf]  # wrist_3 is continuous: no position clamp
    upper = [2 * math.pi] * 5 + [math.inf]
    h = make_harness(policy=tiny_policy(joint_names=rf.UR_JOINTS), allow_action_only=True, **UNSET,
                     controllers_yaml=str(files["controllers"]), controller_name="scaled_joint_trajectory_controller",
                     tf_prefix=rf.UR_PREFIX, joint_limits_yaml=str(files["joint_limits"]),
                     jtc=("scaled_joint_trajectory_controller/joint_trajectory", rf.UR_JOINTS, lower, upper,
                          rf.UR_YAML_VMAX))
    assert h.node.joints == rf.UR_JOINTS and h.node.setup is None
    pose = [0.1, -1.2, 1.0, -1.4, -1.5, 12.0]  # the continuous wrist has turned twice
    h.joint_state(dict(zip(rf.UR_JOINTS, pose)))
    t = h.tick()
    assert t.status.state == ExpertStatus.STATE_WAITING and "robot_description" in t.status.reason
    assert t.trajectory is None

    pub = _publish_description(h.driver, "/robot_description", "<robot name='broken'")  # not XML
    h._wait(lambda: h.node._setup_problem is not None, "the bad URDF")
    t = h.tick()
    assert t.status.state == ExpertStatus.STATE_FAULT and "not valid XML" in t.status.reason
    from std_msgs.msg import String

    pub.publish(String(data=rf.ur_urdf()))
    h._wait(lambda: h.node.setup is not None, "the URDF")
    lim = h.node.limits
    assert lim.continuous.tolist() == [False] * 5 + [True]
    assert lim.max_velocity.tolist() == pytest.approx(rf.UR_YAML_VMAX)  # joint_limits.yaml wins over the URDF
    assert h.node.setup.resolution.sources["ur_wrist_3_joint"]["lower"] == "URDF continuous"
    h.joint_state(dict(zip(rf.UR_JOINTS, pose)))
    ran = 0
    for _ in range(8):
        h.joint_state(dict(zip(rf.UR_JOINTS, pose)))
        t = h.tick()
        ran += t.status.state == ExpertStatus.STATE_RUNNING
    assert ran >= 7 and len(h.jtc.messages) >= 7
    assert h.jtc.violations == []
    last = h.jtc.messages[-1]
    assert list(last.joint_names) == rf.UR_JOINTS
    # the wrist was not clamped into some range around zero: it moves on from 12 rad
    assert abs(last.points[0].positions[5] - 12.0) <= rf.UR_YAML_VMAX[5] * 4 * 0.05 + 1e-9


def _panda_policy():
    return tiny_policy(joint_names=rf.PANDA_ARM + [rf.FINGER])


class ScriptedGripper:
    """A policy whose gripper dimension follows a known script (the rest: the tiny policy's)."""

    def __init__(self, policy, column: int):
        self._policy, self._column = policy, column

    def __getattr__(self, name):
        return getattr(self._policy, name)

    @staticmethod
    def target(step: int) -> float:
        return 0.02 + 0.03 * math.sin(0.4 * step)  # leaves [0, 0.04] at the peaks: clamped

    def step(self, state, step_index, lookahead=1):
        out = self._policy.step(state, step_index, lookahead)
        out[:, self._column] = [self.target(step_index + k) for k in range(lookahead)]
        return out


def test_panda_like_gripper_on_a_second_trajectory_controller(make_harness, tmp_path):
    from arvla_msgs.msg import ExpertStatus

    from arvla.robot_config import main as robot_config

    files = rf.panda_files(tmp_path, hand="joint_trajectory")
    params = dict(controllers_yaml=str(files["controllers"]), controller_name="panda_arm_controller",
                  joint_limits_yaml=str(files["joint_limits"]), urdf_file=str(files["urdf"]),
                  gripper_controller="panda_hand_controller", gripper_joint=rf.FINGER, gripper_rate=5.0)
    soft = rf.PANDA_SOFT_MARGIN
    vmax = [v * rf.PANDA_SCALE for v in rf.PANDA_VMAX]
    h = make_harness(policy=_panda_policy(), allow_action_only=True, **UNSET, **params,
                     jtc=("panda_arm_controller/joint_trajectory", rf.PANDA_ARM,
                          [x + soft for x in rf.PANDA_LOWER], [x - soft for x in rf.PANDA_UPPER], vmax))
    hand = FakeJTC(h.driver, "/panda_hand_controller/joint_trajectory", [rf.FINGER, rf.FINGER2], [0.0, 0.0],
                   [0.04, 0.04], [0.1 * rf.PANDA_SCALE] * 2, clock_ns=lambda: h.now_ns)
    h._wait(lambda: h.driver.count_publishers("/panda_hand_controller/joint_trajectory") > 0, "hand publisher")
    assert h.node.gripper_spec.followers == ((rf.FINGER2, 1.0, 0.0),)
    pose = dict(zip(rf.PANDA_ARM, [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.7]))
    ticks = 20
    for _ in range(ticks):
        h.joint_state({**pose, rf.FINGER: 0.02, rf.FINGER2: 0.02})
        t = h.tick()
        assert t.status.state == ExpertStatus.STATE_RUNNING
    h._wait(lambda: len(hand.messages) >= h.node.counters.gripper_goals, "hand trajectories")
    assert h.jtc.violations == [] and hand.violations == []
    # rate-limited: 5 Hz over 20 ticks at 20 Hz is one goal per 4 ticks, the first at once
    assert 1 <= len(hand.messages) <= ticks // 4 + 1
    for msg in hand.messages:  # the mimic finger follows the commanded one
        for p in msg.points:
            assert p.positions[1] == pytest.approx(p.positions[0])
    # `arvla robot-config` resolves exactly what the node runs with, from the same inputs
    import contextlib
    import io
    import json

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        argv = ["--json"] + [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
        assert robot_config(argv) == 0
    printed = json.loads(out.getvalue())
    assert printed.pop("ok") is True
    assert printed == json.loads(json.dumps(h.node.setup.to_dict()))


def test_panda_like_gripper_command_goals_are_rate_limited_and_never_awaited(make_harness, tmp_path):
    from control_msgs_standin import ensure_control_msgs

    ensure_control_msgs()
    from control_msgs.action import GripperCommand
    from rclpy.action import ActionServer

    from arvla_msgs.msg import ExpertStatus

    files = rf.panda_files(tmp_path, hand="gripper_action")
    h = make_harness(policy=ScriptedGripper(_panda_policy(), 7), allow_action_only=True, **UNSET,
                     controllers_yaml=str(files["controllers"]), controller_name="panda_arm_controller",
                     joint_limits_yaml=str(files["joint_limits"]), urdf_file=str(files["urdf"]),
                     gripper_controller="panda_hand_controller", gripper_rate=4.0, gripper_deadband=0.0,
                     gripper_max_effort=20.0,
                     jtc=("panda_arm_controller/joint_trajectory", rf.PANDA_ARM, rf.PANDA_LOWER, rf.PANDA_UPPER,
                          rf.PANDA_VMAX))
    assert h.node.gripper_spec.command == "gripper_action"
    pose = dict(zip(rf.PANDA_ARM, [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.7]))
    # no action server yet: the ticks go on, the goals are counted as not sent
    for _ in range(3):
        h.joint_state({**pose, rf.FINGER: 0.03, rf.FINGER2: 0.03})
        assert h.tick().status.state == ExpertStatus.STATE_RUNNING
    assert h.node.counters.gripper_unavailable >= 1 and h.node.counters.gripper_goals == 0

    goals: list = []

    def execute(handle):
        goals.append((h.now_ns, handle.request.command.position, handle.request.command.max_effort))
        handle.succeed()
        return GripperCommand.Result(position=handle.request.command.position, reached_goal=True)

    ActionServer(h.driver, GripperCommand, "/panda_hand_controller/gripper_cmd", execute)
    h._wait(lambda: h.node._gripper_out._client.server_is_ready(), "the gripper action server")
    ticks = 24
    for _ in range(ticks):
        h.joint_state({**pose, rf.FINGER: 0.03, rf.FINGER2: 0.03})
        assert h.tick().status.state == ExpertStatus.STATE_RUNNING
    h._wait(lambda: len(goals) >= h.node.counters.gripper_goals, "the gripper goals")
    assert 2 <= len(goals) <= ticks // 5 + 1  # 4 Hz at 20 Hz ticks: one goal per 5 ticks at most
    times = [g[0] for g in goals]  # seen by the server: one period late at most
    assert all(b - a >= 250_000_000 - 50_000_000 for a, b in zip(times, times[1:]))
    assert all(0.0 <= g[1] <= 0.04 and g[2] == 20.0 for g in goals)
    for t_ns, position, _ in goals:  # the sending step's target, clamped into the finger's range
        step = (t_ns - h.step_time(0)) // 50_000_000
        expected = [min(max(ScriptedGripper.target(k), 0.0), 0.04) for k in (step, step - 1)]
        assert any(position == pytest.approx(e) for e in expected), (position, expected)
    assert h.jtc.violations == []


def test_two_arms_in_one_graph_by_namespace(make_harness, ros_context, executor):
    """namespace:=left and namespace:=right: the same defaults, separate topics, one ROS graph."""
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from arvla_action_expert.node import ActionExpertNode
    from expert_harness import JOINTS, base_params

    left = make_harness(namespace="left", allow_action_only=True)
    right = ActionExpertNode(policy=tiny_policy(), context=ros_context, namespace="right", parameter_overrides=[
        Parameter(k, value=v) for k, v in base_params(allow_action_only=True).items()])
    executor.add_node(right)
    right_traj: list = []
    root_traj: list = []
    left.driver.create_subscription(JointTrajectory, "/right/arm_controller/joint_trajectory", right_traj.append, 10)
    left.driver.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", root_traj.append, 10)
    right_js = left.driver.create_publisher(JointState, "/right/joint_states", qos_profile_sensor_data)
    assert spin_until(executor, lambda: right_js.get_subscription_count() > 0, 10.0)
    assert right._traj_pub.topic_name == "/right/arm_controller/joint_trajectory"
    assert left.node._traj_pub.topic_name == "/left/arm_controller/joint_trajectory"
    for _ in range(6):
        left.joint_state({"j1": 0.5, "j2": 0.0, "j3": 0.0})
        right_js.publish(JointState(name=JOINTS, position=[-0.5, 0.0, 0.0]))
        spin_until(executor, lambda: right.counters.joint_states_received > 0, 5.0)
        left.tick()
    assert spin_until(executor, lambda: len(right_traj) >= 3, 5.0)
    assert len(left.jtc.messages) >= 3 and root_traj == []
    # each arm's plan starts from its own measured joint 1 (0.5 left, -0.5 right), a period apart at most
    assert left.jtc.messages[-1].points[0].positions[0] > 0.3
    assert right_traj[-1].points[0].positions[0] < -0.3
    assert left.jtc.violations == []


def test_node_refuses_a_mimic_joint_as_a_commanded_joint(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from arvla_base.config import ConfigError
    from arvla_action_expert.node import ActionExpertNode

    files = rf.panda_files(tmp_path)
    params = dict(use_sim_time=True, joints=[rf.FINGER2], urdf_file=str(files["urdf"]), control_rate=20.0)
    with pytest.raises(ConfigError, match="panda_finger_joint2' mimics 'panda_finger_joint1'"):
        ActionExpertNode(policy=tiny_policy(dims=1), context=ros_context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_velocity_limits_hold_from_a_far_start_on_the_continuous_joint():
    """Pure check of the rule the UR test relies on: a continuous joint is not clamped, its motion
    is still velocity-bounded and finite, whatever the target."""
    from arvla_action_expert.joints import JointLimits
    from arvla_action_expert.trajectory import build_plan

    lim = JointLimits(("w",), [-math.inf], [math.inf], [2.0], continuous=[True])
    plan = build_plan(np.array([40.0]), np.array([[1e300], [np.nan], [-np.inf], [-1e300]]), 50_000_000, lim)
    assert np.all(np.isfinite(plan.positions)) and np.all(np.abs(plan.velocities) <= 2.0)
    assert plan.positions[0, 0] == pytest.approx(40.1)

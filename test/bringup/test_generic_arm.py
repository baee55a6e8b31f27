"""An existing MoveIt / ros2_control config works unchanged: joints and limits come from its files."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from arvla_base.rosutil import spin_until
from bringup_helpers import write_untrained_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "examples"
UR = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
      "wrist_3_joint"]


@pytest.mark.parametrize("controller", ["arm_controller", "arvla_arm_controller"])
def test_expert_takes_joints_and_limits_from_the_robots_files(controller, ros_context, executor, tmp_path):
    from sensor_msgs.msg import JointState
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    from arvla_action_expert.node import ActionExpertNode

    ck = write_untrained_checkpoint(tmp_path / "ur_expert", joints=UR, prefix_dim=16)
    node = ActionExpertNode(context=ros_context, cli_args=[
        "--ros-args", "--params-file", str(EXAMPLES / "generic_arm_action_expert.yaml"),
        "-p", f"checkpoint:={ck}", "-p", f"controller_name:={controller}",
        "-p", f"controllers_yaml:={EXAMPLES / 'generic_arm_ros2_controllers.yaml'}",
        "-p", f"joint_limits_yaml:={EXAMPLES / 'generic_arm_joint_limits.yaml'}",
        "-p", "allow_action_only:=true"])
    executor.add_node(node)
    assert node.joints == UR
    assert node.limits.lower[2] == pytest.approx(-3.14) and node.limits.upper[2] == pytest.approx(3.14)
    # velocity_scale 0.5 of the file's 3.14 rad/s
    assert node.limits.max_velocity[5] == pytest.approx(0.5 * 3.14)

    robot = Node("generic_robot", context=ros_context)
    executor.add_node(robot)
    got: list[JointTrajectory] = []
    robot.create_subscription(JointTrajectory, f"/{controller}/joint_trajectory", got.append, 10)
    js_pub = robot.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    pose = [0.1, -1.2, 1.0, -1.4, -1.5, 0.0]
    robot.create_timer(0.02, lambda: js_pub.publish(JointState(
        header=robot_stamp(robot), name=list(reversed(UR)), position=list(reversed(pose)))))
    # enabled_at_start is false in the example: nothing is published until enabled
    spin_until(executor, lambda: False, 0.5)
    assert got == []
    client = robot.create_client(SetBool, "/arvla/enable")
    assert spin_until(executor, client.service_is_ready, 10.0)
    fut = client.call_async(SetBool.Request(data=True))
    assert spin_until(executor, lambda: fut.done() and len(got) >= 3, 20.0)
    for traj in got:
        assert list(traj.joint_names) == UR
        for p in traj.points:
            assert np.all(np.asarray(p.positions) >= node.limits.lower - 1e-9)
            assert np.all(np.asarray(p.positions) <= node.limits.upper + 1e-9)


def robot_stamp(node):
    from std_msgs.msg import Header

    return Header(stamp=node.get_clock().now().to_msg())

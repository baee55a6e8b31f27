"""The expert node's `inference` parameter: every backend drives the robot, a wrong one is named."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from arvla_base.config import ConfigError
from arvla_base.rosutil import spin_until
from bringup_helpers import PANDA_ARM, write_untrained_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def _node(ros_context, ck, inference):
    from arvla_action_expert.node import ActionExpertNode

    return ActionExpertNode(context=ros_context, cli_args=[
        "--ros-args", "--params-file", str(ROOT / "config" / "action_expert.yaml"),
        "-p", f"checkpoint:={ck}", "-p", f"inference:={inference}", "-p", "allow_action_only:=true"])


@pytest.mark.parametrize("inference", [
    "torch", "int8",
    pytest.param("onnx_int8", marks=pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed"))])
def test_each_backend_publishes_valid_commands(inference, ros_context, executor, tmp_path):
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    ck = write_untrained_checkpoint(tmp_path / "expert", joints=PANDA_ARM, prefix_dim=16)
    node = _node(ros_context, ck, inference)
    executor.add_node(node)
    robot = Node("inference_robot", context=ros_context)
    executor.add_node(robot)
    got: list[JointTrajectory] = []
    robot.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", got.append, 10)
    pub = robot.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    pose = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8, 0.02]

    def publish():
        js = JointState(name=list(PANDA_ARM), position=pose)
        js.header.stamp = robot.get_clock().now().to_msg()
        pub.publish(js)

    robot.create_timer(0.02, publish)
    assert spin_until(executor, lambda: len(got) >= 5, 30.0), f"{inference}: {len(got)} trajectories"
    for traj in got:
        for p in traj.points:
            pos = np.asarray(p.positions)
            assert np.isfinite(pos).all()
            assert np.all(pos >= node.limits.lower - 1e-9) and np.all(pos <= node.limits.upper + 1e-9)


def test_unknown_inference_mode_is_named(ros_context, tmp_path):
    ck = write_untrained_checkpoint(tmp_path / "expert", joints=PANDA_ARM, prefix_dim=16)
    with pytest.raises(ConfigError, match="inference: must be one of"):
        _node(ros_context, ck, "tensorrt")

"""Multi-host deployment, as two OS processes: perception and expert talk only over DDS.

Different hosts are different processes here (same ROS_DOMAIN_ID, discovery on localhost); on
two machines the same holds with the same ROS_DOMAIN_ID and discovery on the subnet (README).
The test process plays camera + robot: it publishes images and joint states and checks that
prefixes flow out of one process and trajectories out of the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from arvla_base.rosutil import spin_until

PANDA_ARM = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(cmd: list[str], log_path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ),
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


@pytest.mark.slow
def test_perception_and_expert_as_two_processes(ros_context, executor, panda_checkpoint, tmp_path):
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from arvla_msgs.msg import ExpertStatus, VLPrefix

    perception = _start([sys.executable, "-m", "arvla_perception.node", "--ros-args",
                         "--params-file", "config/perception.yaml", "-p", "max_rate_hz:=5.0",
                         "-p", "num_threads:=1"], tmp_path / "perception.log")
    expert = _start([sys.executable, "-m", "arvla_action_expert.node", "--ros-args",
                     "--params-file", "config/action_expert.yaml",
                     "-p", f"checkpoint:={panda_checkpoint}", "-p", "control_rate:=20.0",
                     "-p", "max_staleness:=40"], tmp_path / "expert.log")
    try:
        robot = Node("fake_robot_and_camera", context=ros_context)
        executor.add_node(robot)
        prefixes: list[VLPrefix] = []
        trajs: list[JointTrajectory] = []
        statuses: list[ExpertStatus] = []
        robot.create_subscription(VLPrefix, "/arvla/vl_prefix", prefixes.append, 10)
        robot.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", trajs.append, 10)
        robot.create_subscription(ExpertStatus, "/arvla/expert_status", statuses.append, 10)
        img_pub = robot.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        js_pub = robot.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        pose = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8, 0.02])

        def publish_inputs() -> None:
            now = robot.get_clock().now().to_msg()
            js = JointState(name=list(PANDA_ARM), position=pose.tolist())
            js.header.stamp = now
            js_pub.publish(js)
            img = Image(height=96, width=128, encoding="rgb8", step=128 * 3)
            img.header.stamp, img.header.frame_id = now, "camera_optical"
            img.data = rng.integers(0, 255, 96 * 128 * 3, dtype=np.uint8).tobytes()
            img_pub.publish(img)

        robot.create_timer(0.05, publish_inputs)
        ok = spin_until(executor, lambda: len(prefixes) >= 3 and len(trajs) >= 10, timeout_s=120.0)
        for name, proc in (("perception", perception), ("expert", expert)):
            assert proc.poll() is None, f"{name} process died:\n" + (tmp_path / f"{name}.log").read_text()[-3000:]
        assert ok, (f"prefixes {len(prefixes)}, trajectories {len(trajs)}\nexpert log:\n"
                    + (tmp_path / "expert.log").read_text()[-3000:])
        assert prefixes[-1].token_count * prefixes[-1].dim == len(prefixes[-1].data)
        assert prefixes[-1].dim == 1280
        for t in trajs:
            assert list(t.joint_names) == PANDA_ARM
            assert t.points and all(np.isfinite(p.positions).all() for p in t.points)
        assert any(s.state == ExpertStatus.STATE_RUNNING for s in statuses)
    finally:
        rc_p, rc_e = _stop(perception), _stop(expert)
    assert rc_p == 0, (tmp_path / "perception.log").read_text()[-3000:]
    assert rc_e == 0, (tmp_path / "expert.log").read_text()[-3000:]

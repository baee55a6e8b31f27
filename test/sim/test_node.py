"""The sim node in-process over real DDS: /clock, /joint_states, camera stamps, trajectory following,
rejected messages, reset service, and config/sim.yaml in sync with SimNodeConfig."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from arvla_base.config import ConfigError, from_dict, load_yaml
from arvla_base.rosutil import spin_until, stamp_to_ns
from arvla_sim.config import FIELD_HELP, SimNodeConfig
from arvla_sim.robot import JOINT_NAMES


def test_sim_yaml_lists_every_parameter_and_is_valid(repo_root):
    params = load_yaml(repo_root / "config" / "sim.yaml")["arvla_sim"]["ros__parameters"]
    assert set(params) == set(FIELD_HELP)
    cfg = from_dict(SimNodeConfig, params)
    assert cfg == SimNodeConfig(**params)
    assert all(f.metadata["help"] for f in dataclasses.fields(SimNodeConfig))


@pytest.mark.parametrize("key, value", [("task", "juggle"), ("controller_rate_hz", 300.0),
                                        ("camera_rate_hz", 30.0), ("real_time_factor", -1.0),
                                        ("controller_name", "a/b"), ("joint_states_rate_hz", 200.0)])
def test_bad_parameters_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        from_dict(SimNodeConfig, {key: value})


def test_sim_node_publishes_and_follows_a_trajectory(ros_context, executor):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from arvla_sim.node import SimNode

    sim = SimNode(context=ros_context, parameter_overrides=[
        Parameter("real_time_factor", value=0.0), Parameter("task", value="cued_reach"),
        Parameter("camera_rate_hz", value=10.0), Parameter("image_height", value=96),
        Parameter("image_width", value=128), Parameter("seed", value=5)])
    probe = Node("probe", context=ros_context)
    clocks: list[int] = []
    states: list[JointState] = []
    images: list[Image] = []
    success: list[bool] = []
    probe.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)), 100)
    probe.create_subscription(JointState, "/joint_states", states.append, qos_profile_sensor_data)
    probe.create_subscription(Image, "/camera/image_raw", images.append, qos_profile_sensor_data)
    probe.create_subscription(Bool, "/sim/success", lambda m: success.append(m.data), 10)
    traj_pub = probe.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
    reset = probe.create_client(Trigger, "/sim/reset")
    executor.add_node(sim)
    executor.add_node(probe)

    assert spin_until(executor, lambda: len(images) >= 5 and len(states) >= 20, 20.0)
    # Clock: monotonic sim time on the 10 ms controller grid; stamps are sim instants on that
    # grid too, never ahead of the clock. (Clock messages may be overwritten in a burst at
    # real_time_factor 0, so we do not expect to have seen every one.)
    assert all(b > a for a, b in zip(clocks, clocks[1:]))
    js_stamps = [stamp_to_ns(s.header.stamp) for s in states]
    img_stamps = [stamp_to_ns(i.header.stamp) for i in images]
    for stamps in (clocks, js_stamps, img_stamps):
        assert all(t % 10_000_000 == 0 for t in stamps)
        assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert max(js_stamps[-1], img_stamps[-1]) <= sim.now_ns
    assert np.all(np.diff(img_stamps) % 100_000_000 == 0)      # 10 Hz of SIM time (frames may drop)
    assert list(states[-1].name) == list(JOINT_NAMES)
    img = images[-1]
    assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 96, 128, 3 * 128)
    assert len(img.data) == 96 * 128 * 3
    assert success and not success[-1]

    # A malformed command is rejected (and logged) without disturbing anything.
    bad = JointTrajectory(joint_names=["panda_joint1"],
                          points=[JointTrajectoryPoint(positions=[0.1], time_from_start=_dur(0.5))])
    traj_pub.publish(bad)
    assert spin_until(executor, lambda: sim.follower.rejected == 1, 10.0)
    assert "missing joint" in sim.follower.last_reject_reason

    # Follow: joint 1 +0.4 rad and joint 4 +0.3 rad within 1 s (stamp 0 = now), gripper closed.
    q0 = np.array(states[-1].position)
    goal = q0.copy()
    goal[0] += 0.4
    goal[3] += 0.3
    goal[7] = 0.0
    order = list(reversed(JOINT_NAMES))          # by name, not by index
    msg = JointTrajectory(joint_names=order, points=[JointTrajectoryPoint(
        positions=[float(goal[JOINT_NAMES.index(n)]) for n in order], time_from_start=_dur(1.0))])
    sent_at = sim.now_ns
    traj_pub.publish(msg)
    assert spin_until(executor, lambda: sim.follower.accepted == 1, 10.0)
    assert spin_until(executor, lambda: stamp_to_ns(states[-1].header.stamp) > sent_at + 2_500_000_000, 30.0)
    np.testing.assert_allclose(np.array(states[-1].position), goal, atol=0.02)
    mid = [s for s in states if sent_at + 400_000_000 < stamp_to_ns(s.header.stamp) < sent_at + 600_000_000]
    assert mid and 0.05 < mid[0].position[0] - q0[0] < 0.35, "should move gradually, not jump"

    # Reset: next episode (seed 6), robot back home, clock keeps increasing.
    before = sim.now_ns
    future = reset.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10.0)
    assert future.result().success and "seed 6" in future.result().message
    n = len(states)
    assert spin_until(executor, lambda: len(states) > n + 5, 10.0)
    assert stamp_to_ns(states[-1].header.stamp) > before
    assert abs(states[-1].position[0] - q0[0]) < 0.1

    # Choosing a seed at run time: the next reset uses exactly it.
    assert sim.set_parameters([Parameter("seed", value=42)])[0].successful
    assert not sim.set_parameters([Parameter("seed", value=-1)])[0].successful
    future = reset.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10.0)
    assert "seed 42" in future.result().message

    # Switching the task at run time: the same node, topics and clock; the next episode is the
    # new task's. An unknown task is refused with the reason and nothing changes.
    bad = sim.set_parameters([Parameter("task", value="juggle")])[0]
    assert not bad.successful and "task" in bad.reason and sim.config.task == "cued_reach"
    before = sim.now_ns
    assert sim.set_parameters([Parameter("task", value="push")])[0].successful
    assert sim.config.task == "push" and sim.env.task.name == "push" and sim.now_ns >= before
    future = reset.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10.0)
    assert "task push" in future.result().message
    assert spin_until(executor, lambda: clocks[-1] > before + 500_000_000, 10.0)
    assert all(b > a for a, b in zip(clocks, clocks[1:]))   # the clock went on, never back


def _dur(seconds: float):
    from builtin_interfaces.msg import Duration

    sec = int(seconds)
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))

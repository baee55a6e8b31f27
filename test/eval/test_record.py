"""``arvla record`` over real DDS: publish real messages, record raw CDR, read back, compare."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from arvla_base.rosutil import spin_until
from arvla_data.bag import BagRecorder, read_messages
from arvla_data.episodes import bag_to_episode, BagEpisodeConfig


def _publishers(node):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from arvla_msgs.msg import VLPrefix
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return {
        "/arvla/instruction": node.create_publisher(String, "/arvla/instruction", latched),
        "/joint_states": node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data),
        "/camera/image_raw": node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data),
        "/arvla/vl_prefix": node.create_publisher(VLPrefix, "/arvla/vl_prefix", 1),
        "/arm_controller/joint_trajectory": node.create_publisher(
            JointTrajectory, "/arm_controller/joint_trajectory", 10),
    }


def _messages(k: int, stamp_ns: int):
    from arvla_msgs.msg import VLPrefix
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    js = JointState(name=["j1", "j2"], position=[0.1 * k, -0.2 * k])
    js.header.stamp.sec, js.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    img = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(k, k + 18)))
    img.header = js.header
    pre = VLPrefix(header=js.header, frame_seq=k, instruction="pick", model_id="m",
                   token_count=2, dim=2, data=np.arange(4, dtype=np.float32) * k)
    traj = JointTrajectory(joint_names=["j1", "j2"], points=[JointTrajectoryPoint(
        positions=[0.1 * k + 0.05, -0.2 * k], time_from_start=Duration(nanosec=50_000_000))])
    return {"/joint_states": js, "/camera/image_raw": img, "/arvla/vl_prefix": pre,
            "/arm_controller/joint_trajectory": traj}


def test_recorder_node_records_exact_messages(tmp_path, ros_context, executor):
    import rclpy
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    from arvla_data.record import RecordConfig, RecorderNode

    source = rclpy.create_node("arvla_test_source", context=ros_context)
    executor.add_node(source)
    pubs = _publishers(source)
    pubs["/arvla/instruction"].publish(String(data="stack the cubes"))  # before recording starts

    path = tmp_path / "bag"
    n = 12
    with BagRecorder(path) as bag:
        rec = RecorderNode(bag, RecordConfig(output=str(path), discovery_period_s=0.05),
                           context=ros_context)
        executor.add_node(rec)
        assert spin_until(executor, lambda: len(rec.subscribed) == 5, 10.0), rec.subscribed
        # the latched instruction arrives through the transient-local subscription
        assert spin_until(executor, lambda: bag.counts.get("/arvla/instruction") == 1, 5.0)
        sent, stamps = [], []
        start = time.monotonic()
        for k in range(n):  # a 20 Hz "robot": stamps on the wall clock, like a real driver
            stamps.append(time.time_ns())
            msgs = _messages(k, stamps[-1])
            for topic, msg in msgs.items():
                if topic != "/arm_controller/joint_trajectory":
                    pubs[topic].publish(msg)
            # the command follows its state after a compute latency (here 10 ms)
            spin_until(executor, lambda k=k: time.monotonic() - start >= 0.05 * k + 0.01, 1.0)
            pubs["/arm_controller/joint_trajectory"].publish(msgs["/arm_controller/joint_trajectory"])
            sent.append(msgs)
            spin_until(executor, lambda k=k: all(c >= k + 1 for t, c in bag.counts.items()
                                                  if t != "/arvla/instruction"), 2.0)
            spin_until(executor, lambda k=k: time.monotonic() - start >= 0.05 * (k + 1), 1.0)
        counts = bag.counts
    assert "/arvla/expert_status" not in counts  # nobody published it: not subscribed
    # best-effort topics could in principle drop on a loaded machine; reliable ones must not
    assert counts["/arvla/vl_prefix"] == n and counts["/arm_controller/joint_trajectory"] == n
    assert counts["/joint_states"] >= n - 2 and counts["/camera/image_raw"] >= n - 2

    got = list(read_messages(path))
    assert got[0].topic == "/arvla/instruction" and got[0].msg.data == "stack the cubes"
    by_seq = {m.msg.frame_seq: m.msg for m in got if m.topic == "/arvla/vl_prefix"}
    for k in range(n):
        p = by_seq[k]
        assert (p.header.stamp.sec, p.header.stamp.nanosec) == divmod(stamps[k], 10**9)
        np.testing.assert_array_equal(p.data, np.arange(4, dtype=np.float32) * k)
    # the raw CDR on disk is what DDS delivered: rclpy reads back the very messages sent
    # (compared as messages: CDR alignment padding bytes are not guaranteed to be zero)
    from rosbags.rosbag2 import Reader
    from trajectory_msgs.msg import JointTrajectory

    with Reader(path) as reader:
        conn = next(c for c in reader.connections if c.topic == "/arm_controller/joint_trajectory")
        raws = [raw for _, _, raw in reader.messages([conn])]
    assert [deserialize_message(bytes(r), JointTrajectory) for r in raws] == \
        [s["/arm_controller/joint_trajectory"] for s in sent]

    # and the recording makes an episode (stamps of states, receive times of commands)
    ep = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=20.0))
    assert list(ep["joint_names"]) == ["j1", "j2"] and len(ep["states"]) >= n // 2
    assert str(ep["task"]) == "stack the cubes" and ep["frame_tokens"].shape[1:] == (2, 2)
    # each command is "state + 0.05 on j1", sent right after the state: action k = command k
    assert np.median(ep["actions"][:, 0] - ep["states"][:, 0]) == pytest.approx(0.05, abs=1e-5)


def test_record_command_stops_cleanly_on_sigint(tmp_path, ros_context, executor):
    import rclpy
    from std_msgs.msg import String

    source = rclpy.create_node("arvla_test_talker", context=ros_context)
    pub = source.create_publisher(String, "/arvla/chatter", 10)
    path = tmp_path / "cli_bag"
    proc = subprocess.Popen([sys.executable, "-m", "arvla.cli", "record", "-o", str(path),
                             "--topics", "/arvla/chatter"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "writing" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        k = 0
        # publish until the recorder has certainly subscribed and received a while
        while time.monotonic() < deadline:
            pub.publish(String(data=str(k)))
            k += 1
            time.sleep(0.02)
            if source.count_subscribers("/arvla/chatter") and k > 100:
                break
        assert source.count_subscribers("/arvla/chatter") == 1, "recorder never subscribed"
        for _ in range(25):
            pub.publish(String(data=str(k)))
            k += 1
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped (SIGINT)" in out and "/arvla/chatter:" in out
    values = [int(m.msg.data) for m in read_messages(path, ["/arvla/chatter"])]
    assert len(values) >= 20 and values == sorted(values) and values[-1] <= k - 1
    reported = int(out.split("/arvla/chatter:")[1].split()[0])
    assert reported == len(values)


def test_recorder_reports_messages_lost_behind_its_queue(tmp_path, ros_context, executor):
    """A recorder that does not take messages for a while loses all but its queue's worth (DDS
    overwrites them without any event); the publisher's sequence numbers make that loss known."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from arvla_data.record import RecordConfig, RecorderNode

    source = rclpy.create_node("arvla_test_burst", context=ros_context)
    executor.add_node(source)
    pub = source.create_publisher(String, "/arvla/burst",
                                  QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    path = tmp_path / "bag"
    with BagRecorder(path) as bag:
        rec = RecorderNode(bag, RecordConfig(output=str(path), topics=["/arvla/burst"],
                                             discovery_period_s=0.05), context=ros_context)
        executor.add_node(rec)
        assert spin_until(executor, lambda: rec.subscribed == ["/arvla/burst"], 10.0)
        assert spin_until(executor, lambda: pub.get_subscription_count() == 1, 10.0)
        pub.publish(String(data="0"))
        assert spin_until(executor, lambda: bag.counts["/arvla/burst"] == 1, 5.0)
        assert rec.lost == {}
        for k in range(1, 501):  # nobody spins: the recorder's queue (depth 100) overflows
            pub.publish(String(data=str(k)))
        spin_until(executor, lambda: bag.counts["/arvla/burst"] >= 101, 5.0)
        spin_until(executor, lambda: False, 0.3)  # anything later
        kept = bag.counts["/arvla/burst"]
        lost = dict(rec.lost)
    values = [int(m.msg.data) for m in read_messages(path, ["/arvla/burst"])]
    assert values[0] == 0 and values[-1] == 500 and len(values) == kept < 501
    assert lost == {"/arvla/burst": 501 - kept}, lost


def test_record_config_errors():
    from arvla_base.config import ConfigError
    from arvla_data.record import RecordConfig

    with pytest.raises(ConfigError, match="storage: must be one of"):
        RecordConfig(output="x", storage="bag")
    with pytest.raises(ConfigError, match="topics: topic names must be absolute"):
        RecordConfig(output="x", topics=["joint_states"])
    with pytest.raises(ConfigError, match="duration_s"):
        RecordConfig(output="x", duration_s=-1)

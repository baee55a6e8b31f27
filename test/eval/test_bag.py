"""rosbag2 writing/reading without rosbag2_py: round trips, foreign bags, interruption, errors."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from arvla_eval.bag import BagError, BagReader, BagRecorder, make_typestore, read_messages

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _prefix(store, i: int):
    T = store.types
    return T["arvla_msgs/msg/VLPrefix"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=5, nanosec=i),
                                        frame_id="cam"),
        frame_seq=i, instruction="pick", model_id="m", token_count=2, dim=2,
        data=np.arange(4, dtype=np.float32) + i,
        compute_stamp=T["builtin_interfaces/msg/Time"](sec=6, nanosec=0))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_round_trip_and_embedded_definitions(tmp_path, storage):
    store = make_typestore()
    path = tmp_path / "bag"
    with BagRecorder(path, storage=storage, typestore=store) as bag:
        bag.add_topic("/arvla/vl_prefix", "arvla_msgs/msg/VLPrefix")
        bag.add_topic("/arvla/instruction", "std_msgs/msg/String")
        for i in range(5):
            bag.write("/arvla/vl_prefix", 100 + i, _prefix(store, i))
        bag.write("/arvla/instruction", 99, store.types["std_msgs/msg/String"](data="pick"))
        assert bag.counts == {"/arvla/vl_prefix": 5, "/arvla/instruction": 1}

    got = list(read_messages(path))
    assert [m.timestamp for m in got] == [99, 100, 101, 102, 103, 104]
    assert got[0].msg.data == "pick"
    assert [m.msg.frame_seq for m in got[1:]] == list(range(5))
    np.testing.assert_array_equal(got[3].msg.data, np.arange(4, dtype=np.float32) + 2)

    # Another tool with no knowledge of arvla_msgs reads it from the embedded definitions.
    with AnyReader([path]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/arvla/vl_prefix")
        msgs = [reader.deserialize(raw, conn.msgtype) for _, _, raw in reader.messages([conn])]
    assert [m.frame_seq for m in msgs] == list(range(5))


def test_embedded_type_hash_equals_rosidl(tmp_path):
    """The RIHS01 hash we embed must be the one rosidl generated for arvla_msgs, or ROS tools
    would refuse to match the bag's topics with live ones."""
    generated = ROOT / "install" / "arvla_msgs" / "share" / "arvla_msgs" / "msg" / "VLPrefix.json"
    if not generated.exists():
        pytest.skip("arvla_msgs is not colcon-built here (no install/arvla_msgs)")
    expected = json.loads(generated.read_text())["type_hashes"][0]["hash_string"]
    with BagRecorder(tmp_path / "bag") as bag:
        bag.add_topic("/p", "arvla_msgs/msg/VLPrefix")
    meta = (tmp_path / "bag" / "metadata.yaml").read_text()
    assert expected in meta


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_reader_reads_foreign_bags_by_topic(demo_bag, storage):
    path = demo_bag(storage=storage)
    with BagReader(path) as reader:
        topics = reader.topics
        assert topics["/joint_states"].msgtype == "sensor_msgs/msg/JointState"
        assert topics["/joint_states"].count == 201
        assert topics["/arvla/vl_prefix"].count == 10
        msgs = list(reader.messages(["/arvla/vl_prefix", "/arvla/instruction"]))
    assert {m.topic for m in msgs} == {"/arvla/vl_prefix", "/arvla/instruction"}
    stamps = [m.timestamp for m in msgs]
    assert stamps == sorted(stamps)
    prefixes = [m.msg for m in msgs if m.topic == "/arvla/vl_prefix"]
    assert [p.frame_seq for p in prefixes] == list(range(10))
    assert prefixes[3].model_id == "tiny@8px" and prefixes[3].token_count == 2


def test_reader_opens_a_bare_storage_file(demo_bag):
    """``ros2 bag record`` killed hard leaves the .mcap without metadata.yaml."""
    path = demo_bag(prefixes=False, images=False)
    (path / "metadata.yaml").unlink()
    n_dir = sum(1 for _ in read_messages(path, ["/joint_states"]))
    n_file = sum(1 for _ in read_messages(next(path.glob("*.mcap")), ["/joint_states"]))
    assert n_dir == n_file == 201


def test_reader_errors_name_the_problem(tmp_path, demo_bag):
    path = demo_bag(prefixes=False, images=False)
    with pytest.raises(BagError, match=r"has no topic\(s\) \['/nope'\]; it has: .*'/joint_states'"):
        list(read_messages(path, ["/joint_states", "/nope"]))
    assert {m.topic for m in read_messages(path, ["/joint_states", "/nope"], missing_ok=True)} \
        == {"/joint_states"}
    with pytest.raises(BagError, match="bag not found"):
        list(read_messages(tmp_path / "missing"))

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "corrupt.mcap").write_bytes(b"\x89MCAP0\r\n" + os.urandom(300))
    with pytest.raises(BagError, match="cannot read bag .*corrupt"):
        list(read_messages(corrupt))

    truncated = demo_bag(prefixes=False, images=False)
    mcap = next(truncated.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    with pytest.raises(BagError, match=str(truncated.name)):
        list(read_messages(truncated))

    bad_yaml = demo_bag(prefixes=False, images=False)
    (bad_yaml / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    with pytest.raises(BagError, match="cannot read bag"):
        list(read_messages(bad_yaml))


def test_recorder_errors(tmp_path):
    with pytest.raises(BagError, match="storage must be one of"):
        BagRecorder(tmp_path / "a", storage="rosbag1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagRecorder(tmp_path / "exists")
    with BagRecorder(tmp_path / "b") as bag:
        with pytest.raises(BagError, match="unknown message type 'foo_msgs/msg/Bar'"):
            bag.add_topic("/x", "foo_msgs/msg/Bar")
        with pytest.raises(BagError, match=r"topic /y was not added"):
            bag.write_raw("/y", 1, b"")
        bag.add_topic("/s", "std_msgs/msg/String")
        with pytest.raises(BagError, match="already added as std_msgs/msg/String"):
            bag.add_topic("/s", "std_msgs/msg/Int32")
        with pytest.raises(BagError, match="cannot serialise"):
            bag.write("/s", 1, object())


def test_exception_inside_recording_leaves_a_readable_bag(tmp_path):
    store = make_typestore()
    path = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="boom"):
        with BagRecorder(path, typestore=store) as bag:
            bag.add_topic("/arvla/vl_prefix", "arvla_msgs/msg/VLPrefix")
            for i in range(3):
                bag.write("/arvla/vl_prefix", 10 + i, _prefix(store, i))
            raise RuntimeError("boom")
    assert [m.msg.frame_seq for m in read_messages(path)] == [0, 1, 2]


RECORDING_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from arvla_eval.bag import BagRecorder, RecordingInterrupted, make_typestore
    store = make_typestore()
    S = store.types["std_msgs/msg/String"]
    written = 0
    try:
        with BagRecorder(sys.argv[1], typestore=store) as bag, bag.stop_on_signals():
            bag.add_topic("/count", "std_msgs/msg/String")
            bag.add_topic("/blob", "std_msgs/msg/UInt8MultiArray")
            blob = store.types["std_msgs/msg/UInt8MultiArray"](
                layout=store.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                data=np.zeros(50_000, np.uint8))
            while True:
                bag.write("/count", 1000 + written, S(data=str(written)))
                bag.write("/blob", 1000 + written, blob)  # > 1 MiB chunks get flushed
                written += 1
                if written == 50:
                    print("READY", flush=True)
                time.sleep(0.001)
    except RecordingInterrupted as err:
        print("STOPPED", err.signum, written, flush=True)
        sys.exit(0)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_recording_leaves_everything_written(tmp_path, signum):
    path = tmp_path / "bag"
    proc = subprocess.Popen([sys.executable, "-c", RECORDING_CHILD, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        time.sleep(0.2)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    word, got_sig, written = out.split()
    assert word == "STOPPED" and int(got_sig) == int(signum)
    counts = [int(m.msg.data) for m in read_messages(path, ["/count"])]
    blobs = sum(1 for _ in read_messages(path, ["/blob"]))
    # Every message the child wrote is there; the one being written at the signal is either
    # complete (the signal was deferred until the write ended) or was never started.
    assert counts == list(range(len(counts)))
    assert int(written) <= len(counts) <= int(written) + 1 and len(counts) >= 50
    assert len(counts) - 1 <= blobs <= len(counts)

"""PerceptionNode with real rclpy messages, in-process, over the real rmw (see test/conftest.py)."""

from __future__ import annotations

import array
import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data

from arvla_base.config import ConfigError
from arvla_base.rosutil import spin_until, stamp_to_ns
from arvla_msgs.msg import VLPrefix
from arvla_msgs.srv import SetInstruction
from arvla_perception.backbone import BackboneError
from arvla_perception.node import PerceptionNode, main
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import String

TIMEOUT = 30.0  # generous: the CPU is shared with other test runs


def _params(tiny_models, **overrides) -> list[Parameter]:
    values = dict(backbone="transformers", model_path=str(tiny_models["resnet"]),
                  text_model_path=str(tiny_models["bert"]), image_size=32, max_rate_hz=0.0,
                  diagnostics_period_s=0.2, error_log_throttle_s=0.0)
    values.update(overrides)
    return [Parameter(k, value=v) for k, v in values.items()]


def _image(stamp_ns: int, h: int = 24, w: int = 32, shade: int = 0, encoding: str = "rgb8",
           data: bytes | None = None, step: int | None = None) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera_optical"
    msg.height, msg.width, msg.encoding = h, w, encoding
    if data is None:
        img = np.full((h, w, 3), 20, np.uint8)
        img[: h // 2, (shade * 7) % (w // 2): (shade * 7) % (w // 2) + w // 2] = (200, 30 + shade, 90)
        data = img.tobytes()
    msg.step = step if step is not None else (len(data) // h if h else 0)
    msg.data = array.array("B", data)
    return msg


class Harness:
    """The other side of the node: camera publisher, instruction publisher/client, listeners."""

    def __init__(self, ctx, executor, node: PerceptionNode) -> None:
        self.node, self.executor = node, executor
        self.io = Node("perception_test_io", context=ctx)
        executor.add_node(node)
        executor.add_node(self.io)
        self.prefixes: list[VLPrefix] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.camera = self.io.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.instruction = self.io.create_publisher(
            String, "/arvla/instruction",
            QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                       durability=QoSDurabilityPolicy.TRANSIENT_LOCAL))
        self.client = self.io.create_client(SetInstruction, "/arvla/set_instruction")
        self.io.create_subscription(VLPrefix, "/arvla/vl_prefix", self.prefixes.append,
                                    QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        assert self.spin(lambda: self.camera.get_subscription_count() > 0
                         and self.node.count_publishers("/arvla/vl_prefix") > 0
                         and len(self.io.get_publishers_info_by_topic("/arvla/vl_prefix")) > 0), \
            "node and harness did not discover each other"

    def spin(self, pred, timeout: float = TIMEOUT) -> bool:
        return spin_until(self.executor, pred, timeout)

    def send(self, msg: Image) -> None:
        self.camera.publish(msg)

    def send_and_wait(self, msg: Image) -> VLPrefix:
        n = len(self.prefixes)
        self.send(msg)
        assert self.spin(lambda: len(self.prefixes) > n), "no VLPrefix for a good frame"
        return self.prefixes[-1]


@pytest.fixture
def make_harness(ros_context, executor):
    def make(params: list[Parameter]) -> Harness:
        node = PerceptionNode(context=ros_context, parameter_overrides=params)
        return Harness(ros_context, executor, node)
    return make


def test_image_in_prefix_out_with_the_image_stamp(make_harness, tiny_models):
    h = make_harness(_params(tiny_models, token_grid=[2, 3], instruction="pick the red cube"))
    stamp = 1_700_000_123_456_789_000
    out = h.send_and_wait(_image(stamp))
    assert stamp_to_ns(out.header.stamp) == stamp and out.header.frame_id == "camera_optical"
    assert (out.token_count, out.dim) == (7, 16) and len(out.data) == 7 * 16
    assert out.instruction == "pick the red cube" and out.model_id == h.node.backbone.model_id
    assert out.frame_seq == 1
    data = np.asarray(out.data, np.float32).reshape(7, 16)
    assert np.isfinite(data).all() and np.any(data != 0)
    assert stamp_to_ns(out.compute_stamp) > stamp  # computed after capture (system clock now)
    # every config field is a declared, described, read-only parameter
    from arvla_perception.config import field_names

    for name in field_names():
        descriptor = h.node.describe_parameter(name)
        assert descriptor.description and descriptor.read_only, name
    assert h.node.get_parameter("token_grid").value == [2, 3]
    out2 = h.send_and_wait(_image(stamp + 50_000_000, shade=3))
    assert out2.frame_seq == 2 and stamp_to_ns(out2.header.stamp) == stamp + 50_000_000
    assert not np.array_equal(np.asarray(out2.data), np.asarray(out.data))


def test_newest_frame_only_under_a_burst(make_harness, tiny_models):
    # 2 Hz cap: the first frame is processed at once, the rest of the burst waits in the
    # single slot, each new frame replacing the previous one.
    rate_hz = 2.0
    h = make_harness(_params(tiny_models, max_rate_hz=rate_hz))
    base = 10_000_000_000
    t0 = time.monotonic()
    for i in range(30):
        h.send(_image(base + i * 1_000_000, shade=i))
        h.executor.spin_once(timeout_sec=0.005)
    burst_s = time.monotonic() - t0
    # one prefix at once, then at most one per period while frames keep coming, then the newest
    allowed = 2 + int(burst_s * rate_hz)
    st = h.node.stats
    # settle: every received frame is either published or dropped (none errored)
    assert h.spin(lambda: st.received > 1 and st.published + h.node.dropped_frames == st.received
                  and len(h.prefixes) == st.published)
    h.spin(lambda: False, timeout=0.8)  # nothing else may come out
    assert st.published == len(h.prefixes) <= allowed, \
        f"{st.published} prefixes for a {burst_s:.2f} s burst at {rate_hz} Hz"
    assert h.node.dropped_frames >= st.received - allowed and h.node.dropped_frames > 0
    newest = h.prefixes[-1]
    assert newest.frame_seq == st.received  # the last frame that arrived, not a stale one
    seqs = [p.frame_seq for p in h.prefixes]
    assert seqs == sorted(seqs)


def test_instruction_by_topic_and_service_reaches_the_next_prefix(make_harness, tiny_models):
    h = make_harness(_params(tiny_models, instruction="initial"))
    first = h.send_and_wait(_image(1_000_000_000))
    assert first.instruction == "initial"

    h.instruction.publish(String(data="push the blue block"))
    assert h.spin(lambda: h.node.instruction == "push the blue block")
    by_topic = h.send_and_wait(_image(2_000_000_000))
    assert by_topic.instruction == "push the blue block"
    assert not np.array_equal(np.asarray(by_topic.data)[-16:], np.asarray(first.data)[-16:])

    assert h.client.wait_for_service(timeout_sec=TIMEOUT)
    future = h.client.call_async(SetInstruction.Request(instruction="stack the red cube"))
    assert h.spin(future.done)
    assert future.result().success
    by_service = h.send_and_wait(_image(3_000_000_000))
    assert by_service.instruction == "stack the red cube"
    text = lambda p: np.asarray(p.data, np.float32).reshape(p.token_count, p.dim)[-1]  # noqa: E731
    assert not np.array_equal(text(by_service), text(by_topic))


@pytest.mark.parametrize("bad", [
    dict(encoding="16UC1", data=bytes(24 * 32 * 2), step=64),
    dict(encoding="rgb8", data=bytes(24 * 32 * 3 - 5), step=96),     # too short
    dict(encoding="rgb8", data=b"", step=96),                         # empty data
    dict(encoding="mono8", h=0, w=0, data=b"", step=0),                # no pixels
    dict(encoding="yuv422", data=bytes(24 * 32 * 2), step=64),        # no cv_bridge here
])
def test_bad_frames_publish_nothing_count_an_error_and_the_node_lives(make_harness, tiny_models, bad):
    h = make_harness(_params(tiny_models))
    h.send(_image(5_000_000_000, **bad))
    assert h.spin(lambda: h.node.stats.errors == 1), "bad frame was not counted as an error"
    h.spin(lambda: False, timeout=0.3)
    assert h.prefixes == [] and h.node.stats.published == 0
    good = h.send_and_wait(_image(6_000_000_000))  # still alive and serving
    assert stamp_to_ns(good.header.stamp) == 6_000_000_000 and good.frame_seq == 2


def test_diagnostics_report_rate_latency_drops_and_errors(make_harness, tiny_models):
    h = make_harness(_params(tiny_models))
    h.send(_image(1_000, encoding="16UC1", data=bytes(24 * 32 * 2), step=64))
    assert h.spin(lambda: h.node.stats.errors == 1)
    h.send_and_wait(_image(7_000_000_000))
    n = len(h.diagnostics)

    def latest():
        for arr in reversed(h.diagnostics[n:]):
            for st in arr.status:
                if st.name.startswith("arvla_perception") and st.values:
                    return {kv.key: kv.value for kv in st.values}, st
        return None

    assert h.spin(lambda: latest() is not None and latest()[0]["prefixes_published"] == "1")
    values, status = latest()
    assert values["errors"] == "1" and values["frames_received"] == "2"
    assert {"rate_hz", "latency_p50_ms", "latency_max_ms", "inference_p50_ms", "frames_dropped",
            "model_id"} <= set(values)
    assert float(values["inference_p50_ms"]) > 0 and status.hardware_id == h.node.backbone.model_id


def test_use_sim_time_stamps_compute_time_from_clock(make_harness, tiny_models):
    from rosgraph_msgs.msg import Clock

    h = make_harness(_params(tiny_models) + [Parameter("use_sim_time", value=True)])
    clock_pub = h.io.create_publisher(Clock, "/clock", 10)
    sim_now = 100_000_000_000
    clock = Clock()
    clock.clock.sec = sim_now // 1_000_000_000
    assert h.spin(lambda: clock_pub.get_subscription_count() > 0)

    def ticked() -> bool:
        clock_pub.publish(clock)
        return h.node.get_clock().now().nanoseconds == sim_now

    assert h.spin(ticked)
    n_diag = len(h.diagnostics)
    out = h.send_and_wait(_image(sim_now - 250_000_000))
    assert stamp_to_ns(out.compute_stamp) == sim_now  # sim time, not the wall clock
    assert h.spin(lambda: h.node.stats.snapshot(0.0, 0).latency_p50_s == pytest.approx(0.25))
    # diagnostics run on the steady clock, so they keep coming while sim time stands still
    assert h.spin(lambda: len(h.diagnostics) >= n_diag + 2)


def test_default_real_backbone_through_the_node(make_harness):
    h = make_harness([Parameter("max_rate_hz", value=0.0), Parameter("instruction", value="open the drawer")])
    out = h.send_and_wait(_image(3_000_000_000, h=48, w=64))
    assert (out.token_count, out.dim) == (5, 1280) and len(out.data) == 5 * 1280
    assert out.model_id.startswith("efficientnet-lite0#") and out.instruction == "open the drawer"


def test_bad_parameters_and_missing_model_dir_fail_clearly(ros_context, tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="parameter image_size: must be in 16..4096, got 4"):
        PerceptionNode(context=ros_context, parameter_overrides=_params(tiny_models, image_size=4))
    missing = tmp_path / "nope"
    with pytest.raises(BackboneError, match=f"model directory not found: {missing}"):
        PerceptionNode(context=ros_context, parameter_overrides=_params(tiny_models, model_path=str(missing)))


def test_main_exits_nonzero_with_the_reason(tmp_path, capsys):
    missing = tmp_path / "nope"
    rc = main(["--ros-args", "-p", "backbone:=transformers", "-p", f"model_path:={missing}"])
    assert rc == 1
    assert f"model directory not found: {missing}" in capsys.readouterr().err


def test_console_entry_point_with_the_params_file_serves_and_stops_on_sigint(ros_context, executor, repo_root):
    """The user path: a separate process started from config/perception.yaml (real DDS between
    processes), then Ctrl-C: main() must return 0 (KeyboardInterrupt / external shutdown)."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arvla_perception.node", "--ros-args",
         "--params-file", str(repo_root / "config" / "perception.yaml"),
         "-p", "image_size:=64", "-p", "instruction:=open the drawer", "-p", "max_rate_hz:=0.0"],
        cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        io = Node("perception_process_test", context=ros_context)
        executor.add_node(io)
        got: list[VLPrefix] = []
        io.create_subscription(VLPrefix, "/arvla/vl_prefix", got.append,
                               QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
        camera = io.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        frame = _image(42_000_000_000, h=48, w=64)

        def served() -> bool:
            assert proc.poll() is None, f"perception_node exited early:\n{proc.stdout.read()}"
            if camera.get_subscription_count() > 0:
                camera.publish(frame)
            return bool(got)

        assert spin_until(executor, served, 90.0), "no VLPrefix from the perception_node process"
        out = got[0]
        assert stamp_to_ns(out.header.stamp) == 42_000_000_000 and out.instruction == "open the drawer"
        assert (out.token_count, out.dim) == (5, 1280) and "@64px:g2x2+all-minilm-l6-v2#" in out.model_id
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = proc.stdout.read()
    assert rc == 0, f"perception_node exited with {rc} on SIGINT:\n{log}"
    assert "Traceback" not in log, log

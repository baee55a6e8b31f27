"""ROS 2 node ``arvla_perception``: camera frame + instruction -> arvla_msgs/VLPrefix.

Thin adapter around the ROS-free core (config.py, image.py, backbone.py, pipeline.py):

- ``sensor_msgs/Image`` on ``image_topic`` (sensor-data QoS). The callback only stamps a frame
  sequence number and drops the message into a single-slot buffer; a dedicated inference thread
  takes the newest frame, so a slow model never works through a queue of stale frames (frames
  replaced while waiting are counted as dropped). ``max_rate_hz`` caps the inference rate (wall
  clock, so a paused sim clock cannot make it spin).
- The instruction comes from ``std_msgs/String`` on ``instruction_topic`` (reliable, transient
  local: a late-joining node still gets the current one) or the ``arvla_msgs/SetInstruction``
  service; the next computed prefix uses it.
- Output ``arvla_msgs/VLPrefix`` on ``prefix_topic``: header copied from the image (stamp =
  capture time, which the expert re-anchors on), frame_seq, instruction, model_id, token_count,
  dim, row-major float32 data, compute_stamp (node clock, so ``use_sim_time`` is respected).
- Undecodable frames (16UC1, wrong size, empty data...) are counted and logged (throttled);
  nothing is published for them and the node keeps running.
- ``/diagnostics``: rate, latency (compute_stamp - capture stamp), dropped frames, errors.

Run: ``perception_node --ros-args --params-file config/perception.yaml``.
"""

from __future__ import annotations

import array
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy,
                       qos_profile_sensor_data)

from arvla_base.config import ConfigError, from_dict
from arvla_base.params import declare_config_parameters
from arvla_base.rosutil import stamp_to_ns
from arvla_msgs.msg import VLPrefix
from arvla_msgs.srv import SetInstruction
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import String

from .backbone import Backbone, BackboneError, load_backbone
from .config import PerceptionConfig
from .image import ImageEncodingError, image_msg_to_rgb
from .pipeline import LatestSlot, PerceptionStats

NODE_NAME = "arvla_perception"
DIAGNOSTICS_TOPIC = "/diagnostics"

PREFIX_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                        reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.VOLATILE)
INSTRUCTION_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                             reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


class PerceptionNode(Node):
    """Publishes a VLPrefix for the newest camera frame, conditioned on the current instruction."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # Created first: destroy_node() must work even if loading below raises.
        self._stop = threading.Event()
        self._slot: LatestSlot[tuple[Image, int]] = LatestSlot()
        self._worker: threading.Thread | None = None
        self.config: PerceptionConfig = self._read_config()
        cfg = self.config
        self.backbone: Backbone = load_backbone(cfg)
        if self.backbone.random_init:
            self.get_logger().warning(
                f"RANDOM WEIGHTS in the perception backbone ({self.backbone.model_id}): "
                "allow_random_init is true. Prefixes carry no visual/language meaning.")
        self.get_logger().info(f"backbone {self.backbone.describe()}")

        self._instruction_lock = threading.Lock()
        self._instruction = cfg.instruction
        self.stats = PerceptionStats()

        self._prefix_pub = self.create_publisher(VLPrefix, cfg.prefix_topic, PREFIX_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(Image, cfg.image_topic, self._on_image, qos_profile_sensor_data)
        self.create_subscription(String, cfg.instruction_topic, self._on_instruction, INSTRUCTION_QOS)
        self.create_service(SetInstruction, cfg.set_instruction_service, self._on_set_instruction)
        # Steady clock: diagnostics keep coming while a simulation clock is paused or absent.
        self.create_timer(cfg.diagnostics_period_s, self.publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._last_error_count = 0

        self._worker = threading.Thread(target=self._inference_loop, name="arvla_perception_infer",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(f"listening on {cfg.image_topic}, publishing {cfg.prefix_topic} "
                               f"(max {cfg.max_rate_hz:g} Hz, {self.backbone.token_count} x "
                               f"{self.backbone.dim} tokens)")

    # ------------------------------------------------------------------ parameters
    def _read_config(self) -> PerceptionConfig:
        """Declare one read-only parameter per config field, read them once, validate."""
        values = declare_config_parameters(self, PerceptionConfig)
        try:
            return from_dict(PerceptionConfig, values)
        except ConfigError as err:
            raise ConfigError(f"parameter {err}") from err

    # ------------------------------------------------------------------ inputs
    @property
    def instruction(self) -> str:
        with self._instruction_lock:
            return self._instruction

    def set_instruction(self, text: str) -> None:
        with self._instruction_lock:
            changed = text != self._instruction
            self._instruction = text
        if changed:
            self.get_logger().info(f"instruction: {text!r}")

    def _on_image(self, msg: Image) -> None:
        seq = self.stats.frame_received()
        self._slot.put((msg, seq))

    def _on_instruction(self, msg: String) -> None:
        self.set_instruction(msg.data)

    def _on_set_instruction(self, request: SetInstruction.Request,
                            response: SetInstruction.Response) -> SetInstruction.Response:
        self.set_instruction(request.instruction)
        response.success = True
        response.message = ("instruction set" if self.config.text_enabled else
                            "instruction stored, but the backbone is vision-only (text_model_path: none)")
        return response

    @property
    def dropped_frames(self) -> int:
        return self._slot.dropped

    # ------------------------------------------------------------------ inference thread
    def _inference_loop(self) -> None:
        period = 1.0 / self.config.max_rate_hz if self.config.max_rate_hz > 0 else 0.0
        next_start = 0.0
        while not self._stop.is_set():
            delay = next_start - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break  # frames arriving meanwhile replace each other in the slot
            item = self._slot.take(timeout=0.2)
            if item is None:
                continue
            next_start = time.monotonic() + period
            try:
                self._process(*item)
            except Exception as err:  # noqa: BLE001 - the thread must survive any one frame
                if not self.context.ok() or self._stop.is_set():
                    break
                self.stats.error()
                self.get_logger().error(f"frame {item[1]}: perception failed: {type(err).__name__}: {err}",
                                        throttle_duration_sec=self._throttle())

    def _throttle(self) -> float | None:
        return self.config.error_log_throttle_s or None

    def _process(self, msg: Image, seq: int) -> None:
        t0 = time.perf_counter()
        try:
            rgb = image_msg_to_rgb(msg)
        except ImageEncodingError as err:
            self.stats.error()
            self.get_logger().error(f"frame {seq} on {self.config.image_topic} dropped: {err}",
                                    throttle_duration_sec=self._throttle())
            return
        instruction = self.instruction if self.config.text_enabled else ""
        tokens = self.backbone.encode(rgb, instruction)  # (token_count, dim) float32
        inference_s = time.perf_counter() - t0

        out = VLPrefix()
        out.header = msg.header
        out.frame_seq = seq
        out.instruction = instruction
        out.model_id = self.backbone.model_id
        out.token_count, out.dim = tokens.shape
        out.data = array.array("f", tokens.tobytes())
        now = self.get_clock().now()
        out.compute_stamp = now.to_msg()
        self._prefix_pub.publish(out)
        latency_s = (now.nanoseconds - stamp_to_ns(msg.header.stamp)) * 1e-9
        self.stats.prefix_published(latency_s, inference_s)

    # ------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        snap = self.stats.snapshot(time.monotonic(), self.dropped_frames)
        new_errors = snap.errors - self._last_error_count
        self._last_error_count = snap.errors
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: perception"
        status.hardware_id = self.backbone.model_id
        if snap.received == 0:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for images"
        elif new_errors > 0 and snap.rate_hz == 0.0:
            status.level, status.message = DiagnosticStatus.ERROR, f"{new_errors} bad frames, no prefixes"
        elif new_errors > 0:
            status.level, status.message = DiagnosticStatus.WARN, f"{new_errors} bad frames"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{snap.rate_hz:.1f} Hz"
        ms = lambda s: "nan" if s != s else f"{s * 1e3:.1f}"  # noqa: E731 - nan-safe
        values = {
            "rate_hz": f"{snap.rate_hz:.2f}", "latency_p50_ms": ms(snap.latency_p50_s),
            "latency_max_ms": ms(snap.latency_max_s), "inference_p50_ms": ms(snap.inference_p50_s),
            "frames_received": str(snap.received), "prefixes_published": str(snap.published),
            "frames_dropped": str(snap.dropped), "errors": str(snap.errors),
            "model_id": self.backbone.model_id, "tokens": f"{self.backbone.token_count}x{self.backbone.dim}",
            "instruction": self.instruction,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self._diag_pub.publish(arr)

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self) -> None:
        """Stop the inference thread before the publishers go away."""
        self._stop.set()
        self._slot.close()
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    try:
        with rclpy.init(args=args):
            node = PerceptionNode()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except (ConfigError, BackboneError) as err:
        print(f"{NODE_NAME}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

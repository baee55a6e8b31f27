"""Perception benchmark: frames/s and latency (p50/p99) of the default backbone on CPU.

    python bench/perception.py                       # 2 threads, 224 and 128 px, + node run
    python bench/perception.py --threads 1 --frames 100 --ros-seconds 0

Rows (one process, side by side, so ratios are meaningful on a noisy VM):
- default backbone (EfficientNet-Lite0 + MiniLM) at each --sizes, per frame: decode a
  camera-sized rgb8 buffer (--camera HxW) + resize + encoder + pooling; the instruction is
  constant, so its MiniLM token comes from the cache (the node's steady state);
- the same with a new instruction every frame (MiniLM runs each time: the worst case);
- a ResNet-18-shaped transformers ResNetModel (random weights, timing only) at 224 px: the
  specialist's encoder size from PAPER.md, for the ratio;
- end to end through the ROS node (--ros-seconds): a camera publishing at --camera-hz, latency =
  VLPrefix.compute_stamp - image capture stamp (includes DDS, queueing in the single slot and
  inference) and the prefix rate.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from arvla_perception.backbone import load_backbone  # noqa: E402
from arvla_perception.config import PerceptionConfig  # noqa: E402
from arvla_perception.image import fields_to_rgb  # noqa: E402


def _frames(n: int, h: int, w: int) -> list[bytes]:
    """Random camera frames (content does not change a CNN's cost)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes() for _ in range(n)]


class Row:
    """One benchmark row: a loaded backbone and how its instruction varies."""

    def __init__(self, name: str, cfg: PerceptionConfig, new_instruction_each_frame: bool = False) -> None:
        self.name = name
        self.backbone = load_backbone(cfg)
        self.new_instruction = new_instruction_each_frame
        self.times: list[float] = []

    def run_one(self, i: int, buf: bytes, h: int, w: int) -> float:
        text = f"pick up the red cube number {i}" if self.new_instruction else "pick up the red cube"
        t0 = time.perf_counter()
        rgb = fields_to_rgb(h, w, "rgb8", w * 3, buf)
        self.backbone.encode(rgb, text)
        return time.perf_counter() - t0

    def result(self) -> dict[str, float | str]:
        t = np.asarray(self.times)
        return {"model_id": self.backbone.model_id,
                "shape": f"{self.backbone.token_count}x{self.backbone.dim}",
                "p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3),
                "min_ms": float(t.min() * 1e3), "fps": float(1.0 / np.median(t))}


def time_interleaved(rows: list[Row], frames: list[bytes], h: int, w: int, warmup: int) -> None:
    """Round-robin over the rows, one frame each per round: on a shared, noisy CPU every row sees
    the same background load, so the ratios between rows stay meaningful."""
    for i, buf in enumerate(frames):
        for row in rows:
            dt = row.run_one(i, buf, h, w)
            if i >= warmup:
                row.times.append(dt)


def resnet18_dir(root: pathlib.Path) -> pathlib.Path:
    """A ResNet-18-shaped transformers config (no weights: random init, timing only)."""
    from transformers import ResNetConfig

    d = root / "resnet18-shape"
    ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                 layer_type="basic").save_pretrained(d)
    return d


def time_node(seconds: float, camera_hz: float, h: int, w: int, threads: int) -> dict[str, float]:
    """Run the real node in-process with a camera publisher; latency from the VLPrefix stamps."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from arvla_base.rosutil import stamp_to_ns
    from arvla_msgs.msg import VLPrefix
    from arvla_perception.node import PerceptionNode

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = PerceptionNode(context=ctx, parameter_overrides=[
            Parameter("max_rate_hz", value=0.0), Parameter("num_threads", value=threads),
            Parameter("instruction", value="pick up the red cube")])
        io = Node("bench_camera", context=ctx)
        got: list[tuple[int, int]] = []
        io.create_subscription(VLPrefix, "/arvla/vl_prefix",
                               lambda m: got.append((stamp_to_ns(m.header.stamp), stamp_to_ns(m.compute_stamp))),
                               QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
        cam = io.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(io)
        frames = _frames(8, h, w)
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
        t_end = time.monotonic() + seconds
        next_pub, i = time.monotonic(), 0
        while time.monotonic() < t_end:
            if time.monotonic() >= next_pub:
                msg.header.stamp = node.get_clock().now().to_msg()
                msg.data = frames[i % len(frames)]
                cam.publish(msg)
                i += 1
                next_pub += 1.0 / camera_hz
            ex.spin_once(timeout_sec=max(0.0, min(0.005, next_pub - time.monotonic())))
        lat = np.asarray([(c - s) * 1e-9 for s, c in got[2:]])  # skip the warm-up frames
        result = {"sent": i, "received": node.stats.received, "prefixes": len(got),
                  "dropped": node.dropped_frames, "rate_hz": len(got) / seconds,
                  "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else float("nan"),
                  "p99_ms": float(np.percentile(lat, 99) * 1e3) if lat.size else float("nan")}
        ex.remove_node(node)
        node.destroy_node()
        return result
    finally:
        rclpy.shutdown(context=ctx)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    ap.add_argument("--frames", type=int, default=60, help="timed frames per row (after warm-up)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--camera", default="480x640", help="camera frame HxW fed to the decoder")
    ap.add_argument("--ros-seconds", type=float, default=8.0, help="node run length (0 = skip)")
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    import torch

    h, w = (int(v) for v in args.camera.lower().split("x"))
    frames = _frames(args.frames + args.warmup, h, w)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [Row(f"default @{size}px", PerceptionConfig(image_size=size, num_threads=args.threads))
                for size in args.sizes]
        size = min(args.sizes)
        rows.append(Row(f"default @{size}px, new instruction every frame",
                        PerceptionConfig(image_size=size, num_threads=args.threads), True))
        rows.append(Row("ResNet-18 shape @224px (vision only, random weights)",
                        PerceptionConfig(backbone="transformers", model_path=str(resnet18_dir(pathlib.Path(tmp))),
                                         text_model_path="none", image_size=224, num_threads=args.threads,
                                         allow_random_init=True)))
    time_interleaved(rows, frames, h, w, args.warmup)

    print(f"\nperception backbone on CPU: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"camera {h}x{w} rgb8 (decode + resize included), {args.frames} frames per row, interleaved")
    print(f"{'backbone':<56} {'tokens':>8} {'p50 ms':>8} {'p99 ms':>8} {'min ms':>8} {'frames/s':>9}")
    results = [(row.name, row.result()) for row in rows]
    for name, r in results:
        print(f"{name:<56} {r['shape']:>8} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['min_ms']:8.1f} {r['fps']:9.1f}")
    print("(frames/s = 1 / p50: one inference thread)")
    by = dict(results)
    small, large = f"default @{min(args.sizes)}px", f"default @{max(args.sizes)}px"
    if small in by and large in by and small != large:
        print(f"ratio p50 {max(args.sizes)}px / {min(args.sizes)}px: "
              f"{by[large]['p50_ms'] / by[small]['p50_ms']:.2f}x")
    r18 = by.get("ResNet-18 shape @224px (vision only, random weights)")
    if r18 and large in by:
        print(f"ratio p50 ResNet-18 @224 / default @{max(args.sizes)}px: {r18['p50_ms'] / by[large]['p50_ms']:.2f}x")
    node_result = None
    if args.ros_seconds > 0:
        node_result = time_node(args.ros_seconds, args.camera_hz, h, w, args.threads)
        print(f"\nnode end to end (default @128px, camera {args.camera_hz:g} Hz for {args.ros_seconds:g} s): "
              f"{node_result['prefixes']} prefixes ({node_result['rate_hz']:.1f} Hz), "
              f"{node_result['dropped']} of {node_result['received']} frames dropped (newest only), "
              f"latency capture->prefix p50 {node_result['p50_ms']:.1f} ms, p99 {node_result['p99_ms']:.1f} ms")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": by, "node": node_result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

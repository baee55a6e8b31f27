"""Control-loop benchmark: tick jitter and step latency of the action expert node through real topics.

    python bench/control_loop.py                          # paper-size expert, 50 Hz, 30 s
    python bench/control_loop.py --seconds 10 --preset small --lookahead 1
    python bench/control_loop.py --n-embd 256 --n-layer 2 --ffn 1024 --window 50

The expert runs as its own process through the real console entry point
(``python -m arvla_action_expert.node`` with config/action_expert.yaml + overrides), loading an
untrained checkpoint this script writes (random weights: timing only). This process plays the
robot and the perception node: /joint_states at --js-hz, VLPrefix at --prefix-hz (stamped
--camera-latency-ms in the past, --prefix-tokens x prefix_dim), and records every ExpertStatus
and JointTrajectory.

Rows:
- tick interval: differences of ExpertStatus stamps (= the node clock when each tick started):
  timer wake-up jitter inside the expert process; "jitter" = |interval - period|;
- step latency: ExpertStatus.step_latency_sec (policy.step for all lookahead rows);
- trajectory arrival interval: wall time between JointTrajectory arrivals here (what JTC sees:
  timer jitter + compute variance + DDS);
- tick -> trajectory: arrival here - tick start stamp (same host, same wall clock).
Plus the late/dropped tick counts and the share of the period the step latency uses (at p99).
Numbers on a shared 2-vCPU VM are noisy: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = {  # ExpertConfig overrides; "paper" = the authors' specialist size (see PAPER.md)
    "paper": dict(n_embd=512, n_layer=4, n_head=8, ffn=3200, window=100, prefix_dim=384, max_prefix_tokens=64),
    "small": dict(n_embd=128, n_layer=2, n_head=4, ffn=512, window=50, prefix_dim=384, max_prefix_tokens=64),
}
# the embedded Panda's arm_controller (config/action_expert.yaml): 7 arm joints + the finger
PANDA = ["panda_joint1", "panda_joint2", "panda_joint3", "panda_joint4", "panda_joint5", "panda_joint6",
         "panda_joint7", "panda_finger_joint1"]
Q_HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.02]
MODEL_ID = "bench-backbone"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="measured duration (after warm-up)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds discarded at the start")
    p.add_argument("--rate", type=float, default=50.0, help="control rate (Hz)")
    p.add_argument("--lookahead", type=int, default=3, help="lookahead_steps of the node")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    for key in ("n_embd", "n_layer", "n_head", "ffn", "window"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None, help=f"override {key}")
    p.add_argument("--head", choices=["binned", "regression"], default="binned")
    p.add_argument("--threads", type=int, default=1, help="torch_threads of the node")
    p.add_argument("--inference", choices=["torch", "int8", "onnx", "onnx_int8"], default="torch",
                   help="the node's inference backend for the AR step")
    p.add_argument("--js-hz", type=float, default=100.0, help="joint_states publish rate")
    p.add_argument("--prefix-hz", type=float, default=5.0, help="VLPrefix publish rate")
    p.add_argument("--prefix-tokens", type=int, default=16)
    p.add_argument("--camera-latency-ms", type=float, default=60.0, help="prefix stamp age when published")
    return p.parse_args(argv)


def write_checkpoint(args: argparse.Namespace, directory: pathlib.Path) -> dict:
    from arvla_base.config import to_dict
    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
    from arvla_action_expert.model import ARExpert, ExpertConfig
    from arvla_action_expert.normalize import Normalizer
    import torch

    over = dict(PRESETS[args.preset])
    for key in ("n_embd", "n_layer", "n_head", "ffn", "window"):
        if getattr(args, key) is not None:
            over[key] = getattr(args, key)
    cfg = ExpertConfig(state_dim=len(PANDA), action_dim=len(PANDA), head=args.head, **over)
    torch.manual_seed(0)
    model = ARExpert(cfg)
    # Targets near home with a small spread, so the trajectory stays inside the Panda limits
    # (limits do not change the timing, but a realistic path exercises the same code).
    state_norm = Normalizer(np.asarray(Q_HOME, np.float32), np.full(len(PANDA), 0.1, np.float32))
    target_norm = Normalizer(np.asarray(Q_HOME, np.float32), np.full(len(PANDA), 0.01, np.float32))
    save_checkpoint(directory, model, state_norm=state_norm, target_norm=target_norm,
                    meta=CheckpointMeta(model_id=MODEL_ID, control_rate_hz=args.rate, joint_names=PANDA, stage=2))
    n_params = sum(p.numel() for p in model.parameters())
    return {**to_dict(cfg), "params_M": n_params / 1e6}


def _pct(x: list[float] | np.ndarray, scale: float = 1e3) -> tuple[str, str, str, str]:
    a = np.asarray(x, dtype=np.float64) * scale
    if a.size == 0:
        return ("-", "-", "-", "0")
    return (f"{np.percentile(a, 50):.3f}", f"{np.percentile(a, 99):.3f}", f"{a.max():.3f}", str(a.size))


def run(args: argparse.Namespace) -> int:
    import rclpy
    from arvla_msgs.msg import ExpertStatus, VLPrefix
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from arvla_base.rosutil import ns_to_stamp, stamp_to_ns

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(150, 199)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    tmp = tempfile.TemporaryDirectory(prefix="arvla_bench_")
    ck = pathlib.Path(tmp.name) / "expert"
    model_info = write_checkpoint(args, ck)
    prefix_dim = model_info["prefix_dim"]
    period_ns = int(round(1e9 / args.rate))

    log_path = pathlib.Path(tmp.name) / "node.log"
    cmd = [sys.executable, "-m", "arvla_action_expert.node", "--ros-args",
           "--params-file", str(ROOT / "config" / "action_expert.yaml"),
           "-p", f"checkpoint:={ck}", "-p", f"control_rate:={float(args.rate)}",
           "-p", f"lookahead_steps:={args.lookahead}", "-p", f"torch_threads:={args.threads}",
           "-p", "max_staleness:=100", "-p", "diagnostics_period:=1.0", "-p", f"inference:={args.inference}"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())

    rclpy.init()
    node = Node("arvla_control_loop_bench")
    js_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    prefix_pub = node.create_publisher(VLPrefix, "/arvla/vl_prefix",
                                       QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    statuses: list[tuple[float, ExpertStatus]] = []
    trajs: list[float] = []
    rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(ExpertStatus, "/arvla/expert_status", lambda m: statuses.append((time.time(), m)), rel)
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", lambda m: trajs.append(time.time()),
                             rel)
    rng = np.random.default_rng(0)
    seq = [0]

    def publish_js() -> None:
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.name = list(reversed(PANDA)) + ["panda_finger_joint1"]  # by name, not by order
        msg.position = list(reversed(Q_HOME)) + [0.04]
        js_pub.publish(msg)

    def publish_prefix() -> None:
        seq[0] += 1
        msg = VLPrefix()
        ns_to_stamp(node.get_clock().now().nanoseconds - int(args.camera_latency_ms * 1e6), msg.header.stamp)
        msg.frame_seq, msg.model_id = seq[0], MODEL_ID
        msg.token_count, msg.dim = args.prefix_tokens, prefix_dim
        msg.data = rng.standard_normal(args.prefix_tokens * prefix_dim).astype(np.float32)
        msg.compute_stamp = node.get_clock().now().to_msg()
        prefix_pub.publish(msg)

    node.create_timer(1.0 / args.js_hz, publish_js)
    node.create_timer(1.0 / args.prefix_hz, publish_prefix)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    print(f"expert: {args.preset} {model_info['params_M']:.1f} M params (n_embd {model_info['n_embd']}, "
          f"{model_info['n_layer']} layers, ffn {model_info['ffn']}, window {model_info['window']}, "
          f"{model_info['head']} head), {args.rate:g} Hz, lookahead {args.lookahead}, "
          f"torch threads {args.threads}, inference {args.inference}; "
          f"prefixes {args.prefix_tokens}x{prefix_dim} at {args.prefix_hz:g} Hz", flush=True)
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not any(s.state == ExpertStatus.STATE_RUNNING for _, s in statuses):
            if proc.poll() is not None:
                print(f"expert node exited with {proc.returncode}:\n{log_path.read_text()}", file=sys.stderr)
                return 1
            ex.spin_once(timeout_sec=0.05)
        if not any(s.state == ExpertStatus.STATE_RUNNING for _, s in statuses):
            print(f"expert never reached RUNNING; last status: {statuses[-1][1] if statuses else None}\n"
                  f"{log_path.read_text()}", file=sys.stderr)
            return 1
        end = time.monotonic() + args.warmup + args.seconds
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        node.destroy_node()
        rclpy.shutdown()

    t_first = statuses[0][0]
    measured = [(rx, s) for rx, s in statuses if rx >= t_first + args.warmup]
    stamps = np.array([stamp_to_ns(s.header.stamp) for _, s in measured], dtype=np.int64)
    intervals = np.diff(stamps) * 1e-9
    jitter = np.abs(intervals - period_ns * 1e-9)
    running = [s for _, s in measured if s.state == ExpertStatus.STATE_RUNNING]
    latency = [s.step_latency_sec for s in running]
    tick_to_status = [rx - stamp_to_ns(s.header.stamp) * 1e-9 for rx, s in measured]
    traj_rx = np.array([t for t in trajs if t >= t_first + args.warmup])
    traj_jitter = np.abs(np.diff(traj_rx) - period_ns * 1e-9)
    steps = np.array([s.step for _, s in measured])
    dropped = int(np.sum(np.maximum(np.diff(steps) - 1, 0))) if steps.size > 1 else 0
    late = int(measured[-1][1].late_ticks - measured[0][1].late_ticks) if measured else 0
    states = {name: sum(1 for _, s in measured if s.state == value) for name, value in
              (("RUNNING", 0 + ExpertStatus.STATE_RUNNING), ("HOLDING", ExpertStatus.STATE_HOLDING),
               ("FAULT", ExpertStatus.STATE_FAULT), ("WAITING", ExpertStatus.STATE_WAITING))}

    rows = [("tick interval (ms)", *_pct(intervals)),
            ("tick jitter |interval - period| (ms)", *_pct(jitter)),
            ("step latency, policy.step x lookahead (ms)", *_pct(latency)),
            ("tick start -> status received (ms)", *_pct(tick_to_status)),
            ("trajectory arrival jitter (ms)", *_pct(traj_jitter))]
    w = max(len(r[0]) for r in rows)
    print(f"\n{'':<{w}}  {'p50':>9} {'p99':>9} {'max':>9} {'n':>6}")
    for name, p50, p99, mx, n in rows:
        print(f"{name:<{w}}  {p50:>9} {p99:>9} {mx:>9} {n:>6}")
    period_ms = period_ns * 1e-6
    lat99 = float(np.percentile(latency, 99) * 1e3) if latency else float("nan")
    print(f"\nperiod {period_ms:.1f} ms; step latency p99 uses {lat99 / period_ms:.0%} of it; "
          f"late ticks {late}, dropped steps {dropped} over {len(measured)} ticks; states {states}")
    tmp.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

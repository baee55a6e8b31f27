"""``arvla doctor``: what ROS 2 / rmw / torch / device is here, and does DDS carry a VLPrefix?

Prints one line per check and exits non-zero, naming the failed check and what to do, on any
failure. The round trip publishes an ``arvla_msgs/VLPrefix`` on a private topic and waits for it
to come back through the rmw (real DDS, not an intra-process shortcut).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from typing import Callable

OK, FAIL = "ok  ", "FAIL"


class DoctorError(RuntimeError):
    """A doctor check failed; the message says what and how to fix it."""


def check_python() -> str:
    return f"Python {platform.python_version()} ({platform.machine()}, {platform.system()})"


def check_ros() -> str:
    try:
        import rclpy  # noqa: F401
    except ImportError as err:
        raise DoctorError(f"rclpy not importable ({err}); run `bash scripts/setup` then `. ./env.sh`") from err
    distro = os.environ.get("ROS_DISTRO", "")
    if not distro:
        raise DoctorError("ROS_DISTRO is not set; source ./env.sh (or your ROS setup.bash)")
    return f"ROS 2 {distro} (rclpy from {os.path.dirname(rclpy.__file__)})"


def check_rmw() -> str:
    from rclpy.utilities import get_rmw_implementation_identifier

    rmw = get_rmw_implementation_identifier()
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET (default)")
    return f"rmw {rmw}, ROS_DOMAIN_ID={domain}, discovery range {rng}"


def check_msgs() -> str:
    try:
        from arvla_msgs.msg import ExpertStatus, VLPrefix  # noqa: F401
        from arvla_msgs.srv import ResetMemory, SetInstruction  # noqa: F401
    except ImportError as err:
        raise DoctorError(f"arvla_msgs not importable ({err}); build it: `bash scripts/setup`, "
                          "then `. ./env.sh`") from err
    import arvla_msgs

    return f"arvla_msgs from {os.path.dirname(arvla_msgs.__file__)}"


def check_torch() -> str:
    try:
        import torch
    except ImportError as err:
        raise DoctorError(f"torch not importable ({err}); run `bash scripts/setup`") from err
    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    return f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads"


def round_trip(timeout_s: float = 10.0) -> str:
    """Publish a VLPrefix and receive it back through DDS; check every field survived."""
    import numpy as np
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    from arvla_msgs.msg import VLPrefix

    topic = f"/arvla/doctor_{uuid.uuid4().hex[:8]}/vl_prefix"
    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.VOLATILE)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        # Two nodes so the message really leaves one participant's writer for the other's reader.
        pub_node = Node("arvla_doctor_pub", context=ctx, enable_rosout=False)
        sub_node = Node("arvla_doctor_sub", context=ctx, enable_rosout=False)
        got: list[VLPrefix] = []
        sub_node.create_subscription(VLPrefix, topic, got.append, qos)
        pub = pub_node.create_publisher(VLPrefix, topic, qos)
        rng = np.random.default_rng(0)
        data = rng.standard_normal(4 * 8).astype(np.float32)
        msg = VLPrefix()
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
        msg.header.frame_id = "doctor_camera"
        msg.frame_seq = 42
        msg.instruction = "doctor round trip"
        msg.model_id = "doctor"
        msg.token_count, msg.dim = 4, 8
        msg.data = data.tolist()
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(pub_node)
        ex.add_node(sub_node)
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < timeout_s:
            if pub.get_subscription_count() > 0:
                pub.publish(msg)
            ex.spin_once(timeout_sec=0.05)
        dt = time.monotonic() - t0
        if not got:
            raise DoctorError(
                f"no VLPrefix came back through DDS within {timeout_s:.0f}s on {topic} "
                f"(matched subscriptions: {pub.get_subscription_count()}). Check the rmw "
                "installation and that multicast/loopback discovery is allowed "
                "(try ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).")
        back = got[0]
        back_data = np.asarray(back.data, dtype=np.float32)
        if not (back.frame_seq == 42 and back.header.stamp.sec == 1234 and back.dim == 8
                and back.token_count == 4 and back.instruction == msg.instruction
                and np.array_equal(back_data, data)):
            raise DoctorError("VLPrefix came back altered: the message type support is broken")
        ex.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
        return f"VLPrefix round trip through DDS in {dt * 1000:.0f} ms ({len(data)} floats intact)"
    finally:
        rclpy.shutdown(context=ctx)


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("python", check_python),
    ("ros", check_ros),
    ("rmw", check_rmw),
    ("arvla_msgs", check_msgs),
    ("torch", check_torch),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arvla doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0, help="round-trip timeout, s")
    args = parser.parse_args(argv)
    failed = []
    for name, check in CHECKS + [("round trip", lambda: round_trip(args.timeout))]:
        if name == "round trip" and failed:
            print(f"[skip] {name}: earlier checks failed")
            continue
        try:
            print(f"[{OK}] {name}: {check()}", flush=True)
        except Exception as err:  # noqa: BLE001 - doctor reports every failure as a line
            failed.append(name)
            print(f"[{FAIL}] {name}: {err}", flush=True)
    if failed:
        print(f"arvla doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    print("arvla doctor: all checks passed")
    return 0

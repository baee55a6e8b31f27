"""Hand a robot between arvla and MoveIt (or a teleop) — the two ways to coexist.

1. **Shared controller, gated** (works everywhere): arvla and MoveIt both command the same
   joint_trajectory_controller; ``/arvla/enable`` (std_srvs/SetBool) on the expert switches
   arvla's publishing off before MoveIt plans and executes, and back on afterwards. A disabled
   expert publishes nothing at all, so JTC only ever sees one commander.
2. **Second controller, switched** (needs ros2_control's controller_manager): arvla commands its
   own JTC (e.g. ``arvla_arm_controller``) over the same joints; ``switch_controllers`` below calls
   ``/controller_manager/switch_controller`` to activate one and deactivate the other atomically
   (STRICT), which is what MoveIt's controller manager plugin does too.

``controller_manager_msgs`` is part of every ros2_control install but not of the PyPI ROS wheels;
where it is missing (or no controller manager answers) the switch is *skipped* with a message
that says so and points at option 1 — never a crash, never a half-switched robot.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class SwitchResult:
    ok: bool        # the controller manager accepted the switch
    skipped: bool   # nothing was attempted (no controller_manager_msgs / no service)
    message: str


def switch_controllers(node: Any, *, activate: Sequence[str], deactivate: Sequence[str],
                       service: str = "/controller_manager/switch_controller",
                       timeout_s: float = 5.0, executor: Any = None) -> SwitchResult:
    """Atomically activate/deactivate controllers via controller_manager (STRICT).

    ``node``: an rclpy node to make the client on; ``executor``: spun while waiting (if None,
    ``rclpy.spin_until_future_complete`` is used with the node)."""
    if not activate and not deactivate:
        return SwitchResult(False, True, "nothing to switch: give controllers to activate/deactivate")
    try:
        from controller_manager_msgs.srv import SwitchController
    except ImportError:
        return SwitchResult(False, True, "controller_manager_msgs is not installed here (no ros2_control): "
                            "switch skipped — share the controller and gate arvla with /arvla/enable instead")
    client = node.create_client(SwitchController, service)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return SwitchResult(False, True, f"no controller manager answers on {service} within "
                                f"{timeout_s:.1f}s: switch skipped (is ros2_control running?)")
        req = SwitchController.Request()
        req.activate_controllers = list(activate)
        req.deactivate_controllers = list(deactivate)
        req.strictness = SwitchController.Request.STRICT
        req.activate_asap = True
        future = client.call_async(req)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            if executor is not None:
                executor.spin_once(timeout_sec=0.05)
            else:
                import rclpy

                rclpy.spin_until_future_complete(node, future, timeout_sec=0.05)
        if not future.done():
            return SwitchResult(False, False, f"{service} did not answer within {timeout_s:.1f}s")
        ok = bool(future.result().ok)
        what = f"activate {list(activate)}, deactivate {list(deactivate)}"
        return SwitchResult(ok, False, f"controller manager {'accepted' if ok else 'REFUSED'}: {what}")
    finally:
        node.destroy_client(client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arvla switch-controller",
                                     description="activate/deactivate ros2_control controllers (STRICT)")
    parser.add_argument("--activate", nargs="*", default=[], help="controllers to activate")
    parser.add_argument("--deactivate", nargs="*", default=[], help="controllers to deactivate")
    parser.add_argument("--service", default="/controller_manager/switch_controller")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    import rclpy
    from rclpy.node import Node

    with rclpy.init():
        node = Node("arvla_switch_controller")
        try:
            result = switch_controllers(node, activate=args.activate, deactivate=args.deactivate,
                                        service=args.service, timeout_s=args.timeout)
        finally:
            node.destroy_node()
    print(f"arvla switch-controller: {'skipped: ' if result.skipped else ''}{result.message}")
    if result.skipped:
        return 3
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

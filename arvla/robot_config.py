"""``arvla robot-config``: what the expert node would command, resolved without starting it.

    arvla robot-config --controllers-yaml F --controller NAME [--joint-limits-yaml F]
        [--urdf F | --robot-description-topic T] [--param NAME=VALUE ...] [--params-file F] [--json]

Prints the joints, each joint's limits and where each value came from (parameters >
joint_limits.yaml > URDF), the velocity scale and the gripper output, as a table or JSON. It runs
the node's own resolution (``ExpertNodeConfig.resolve_robot``) on the same inputs, so what it
prints is what the node enforces; anything the node would refuse exits 1 with the node's reason.
``--param`` takes the node's parameter names (values in YAML, as ``-p name:=value``), e.g.
``--param tf_prefix=ur_``; ``--params-file`` the node's parameters file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Optional, Sequence

import yaml

from arvla_base.config import ConfigError, load_yaml
from arvla_action_expert.joints import JointError, UrdfRobot
from arvla_action_expert.node_config import NODE_NAME, RobotSetup, config_from_parameters, parameter_fields


class RobotConfigError(ValueError):
    """The inputs cannot be resolved as the node would; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arvla robot-config", description=__doc__.split("\n\n")[0])
    p.add_argument("--controllers-yaml", help="ros2_controllers.yaml (parameter controllers_yaml)")
    p.add_argument("--controller", help="the arm's JointTrajectoryController (parameter controller_name)")
    p.add_argument("--joint-limits-yaml", help="MoveIt joint_limits.yaml (parameter joint_limits_yaml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--urdf", help="URDF file, xacro-expanded (parameter urdf_file)")
    src.add_argument("--robot-description-topic", metavar="TOPIC",
                     help="read the URDF from this std_msgs/String topic (transient local), as the node does")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the topic (default 5)")
    p.add_argument("--params-file", help="the node's parameters file (section arvla_action_expert or /**)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a node parameter (YAML value), e.g. tf_prefix=ur_ or gripper_controller=hand_controller")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The node's parameter values from --params-file, then the flags, then --param (last wins)."""
    values: dict[str, Any] = {}
    if args.params_file:
        data = load_yaml(args.params_file)
        for key in (NODE_NAME, f"/{NODE_NAME}", "/**"):
            block = data.get(key)
            if isinstance(block, dict) and isinstance(block.get("ros__parameters"), dict):
                values.update(block["ros__parameters"])
    values.pop("use_sim_time", None)
    flags = {"controllers_yaml": args.controllers_yaml, "controller_name": args.controller,
             "joint_limits_yaml": args.joint_limits_yaml, "urdf_file": args.urdf}
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.robot_description_topic:
        values["robot_description_topic"] = args.robot_description_topic
    for entry in args.param:
        name, sep, text = entry.partition("=")
        name = name[:-1] if name.endswith(":") else name  # ROS's name:=value works too
        if not sep or not name.strip():
            raise RobotConfigError(f"--param {entry!r}: expected NAME=VALUE")
        value = yaml.safe_load(text) if text.strip() else ""
        field = next((f for f in parameter_fields() if f.name == name.strip()), None)
        if field is not None and field.type == "str" and not isinstance(value, str):
            value = text  # tf_prefix=1_ or a path: strings stay strings
        values[name.strip()] = value
    return values


def read_topic(topic: str, timeout_s: float) -> tuple[str, str]:
    """(URDF text, resolved topic) from a transient-local std_msgs/String topic, like the node."""
    import rclpy
    from std_msgs.msg import String

    from arvla_base.rosutil import spin_until
    from arvla_action_expert.node import robot_description_qos

    got: list[str] = []
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        from rclpy.executors import SingleThreadedExecutor

        node = rclpy.create_node("arvla_robot_config", context=ctx)
        sub = node.create_subscription(String, topic, lambda m: got.append(m.data), robot_description_qos())
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        spin_until(executor, lambda: bool(got), timeout_s)
        name = sub.topic_name
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    if not got:
        raise RobotConfigError(f"no robot_description on {name} within {timeout_s:g} s (is robot_state_publisher "
                               "running, in this ROS_DOMAIN_ID?)")
    return got[0], name


def resolve(args: argparse.Namespace) -> RobotSetup:
    """What the node resolves from these inputs (RobotConfigError with the reason if it would refuse)."""
    try:
        cfg = config_from_parameters(parameters(args))
        urdf: Optional[UrdfRobot] = None
        if args.robot_description_topic:
            text, topic = read_topic(args.robot_description_topic, args.timeout)
            urdf = UrdfRobot.from_xml(text, f"topic {topic}")
        elif cfg.urdf() is None and cfg.robot_description_topic and cfg.needs_robot_description():
            raise RobotConfigError("some limits are left to the URDF and none is given: the node would wait for "
                                   f"it on '{cfg.robot_description_topic}'; pass --urdf F or "
                                   "--robot-description-topic T")
        setup = cfg.resolve_robot(urdf)
        if setup.gripper is not None and setup.gripper.command == "gripper_action":
            from arvla_action_expert.node import gripper_command_action

            gripper_command_action()
        return setup
    except (ConfigError, JointError) as err:
        raise RobotConfigError(str(err)) from err


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.6g}"


def table(setup: RobotSetup) -> str:
    """The resolution as text: header lines, then one row per joint."""
    d = setup.to_dict()
    lines = setup.header()  # controller, gripper, sources
    vs = d["velocity_scale"]
    lines.append(f"velocity limits x {vs['value']:g} ({vs['source']})")
    rows = [("joint", "position", "position from", "velocity", "unscaled", "velocity from", "acceleration",
             "acceleration from")]
    for name, j in d["joints"].items():
        src = j["sources"]
        pos = "continuous" if j["continuous"] else f"[{_fmt(j['lower'])}, {_fmt(j['upper'])}]"
        pos_src = src["lower"] if src["lower"] == src["upper"] else f"{src['lower']} / {src['upper']}"
        rows.append((name, pos, pos_src, _fmt(j["max_velocity"]), _fmt(j["max_velocity_unscaled"]),
                     src["max_velocity"], _fmt(j["max_acceleration"]), src["max_acceleration"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup = resolve(args)
    except RobotConfigError as err:
        if args.json:
            print(json.dumps({"ok": False, "error": str(err)}, indent=2))
        print(f"arvla robot-config: the node would refuse: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, **setup.to_dict()}, indent=2))
    else:
        print(table(setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

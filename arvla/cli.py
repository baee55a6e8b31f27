"""The ``arvla`` command line: ``arvla <command> [args]``.

Each command lives in its own module and is imported only when used, so ``arvla doctor`` works
even when an optional heavy dependency of another command is broken.
"""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). The function takes argv (list[str]) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("arvla.doctor:main", "check ROS 2, rmw, torch, device; VLPrefix round trip over DDS"),
    "train": ("arvla.commands.train:cli_main", "train the action expert (stage 1 or 2)"),
    "record": ("arvla.commands.record:cli_main", "record arvla topics to a rosbag2 (MCAP) bag"),
    "bag2episodes": ("arvla.commands.bag2episodes:cli_main", "convert rosbag2 bags to training episodes (.npz)"),
    "import-lerobot": ("arvla.commands.import_lerobot:cli_main", "convert a LeRobot dataset to training episodes"),
    "export-lerobot": ("arvla.commands.export_lerobot:cli_main", "write episodes as a LeRobot v3.0 dataset (parquet + MP4)"),
    "bringup": ("arvla.bringup:main", "run a launch file's nodes in one process (no launch_ros needed)"),
    "robot-config": ("arvla.robot_config:main", "dry run: the joints, limits (and their sources) and gripper the expert node would use"),
    "switch-controller": ("arvla.controller_switch:main", "activate/deactivate ros2_control controllers (MoveIt hand-over)"),
    "eval": ("arvla.commands.eval:cli_main", "closed-loop evaluation: AR expert vs chunked baselines, report"),
    "replay": ("arvla.commands.replay:cli_main", "open-loop replay of a bag through a checkpoint (MAE, staleness, latency)"),
    "sim": ("arvla.commands.sim:main", "embedded MuJoCo Panda: expert demo video, camera frame, collect episodes"),
    "dagger": ("arvla.commands.dagger:cli_main", "episodes the expert drives in the sim, labelled by the scripted demonstrator (DAgger)"),
    "demo": ("arvla.demo:main", "end to end on CPU: collect demos via ROS, train the expert, evaluate closed loop, report"),
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: arvla <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "arvla <command> --help for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"arvla: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        print("arvla: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

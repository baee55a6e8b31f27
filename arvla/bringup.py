"""``arvla bringup``: run a launch file's graph in ONE process, without launch_ros.

    arvla bringup [bringup.launch.py] checkpoint:=runs/demo/expert with_sim:=true use_sim_time:=true

Arguments use ``ros2 launch`` syntax (``name:=value``) and the same defaults, because the graph is
read from the launch file itself (``arvla.launch_graph``): the launch files and the parameter
files are the single source of truth for both paths. Each node spins in its own
SingleThreadedExecutor and thread (``NodeThreads``), as separate processes would;
``--duration S`` stops after S seconds (wall), Ctrl-C stops at once. Arguments from ``--ros-args``
on go to rclpy (``name:=value`` launch arguments do not: rcl would read them as remap rules).

Perception takes the settings the checkpoint was trained with unless ``perception_params:=FILE``
is given (``arvla.perception_params``, shared with the launch files), and the graph does not
start when the expert would refuse perception's prefixes (model_id): the error names the
parameters file to use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pathlib
import sys
import threading
import time
from typing import Any

import yaml

from arvla_base.paths import package_share_dir
from arvla.launch_graph import (CheckpointParams, LaunchGraph, LaunchParseError, NodeSpec,
                                parse_launch_file, resolve)

log = logging.getLogger("arvla.bringup")

# executable (console_scripts name) -> "module:NodeClass" started in-process. A test checks each
# module is the one its console script runs.
NODE_CLASSES: dict[str, str] = {
    "perception_node": "arvla_perception.node:PerceptionNode",
    "action_expert_node": "arvla_action_expert.node:ActionExpertNode",
    "sim_node": "arvla_sim.node:SimNode",
}


class BringupError(RuntimeError):
    """The graph cannot be started; the message says which node / argument and why."""


def find_launch_file(name: str) -> pathlib.Path:
    path = pathlib.Path(name)
    if path.is_file():
        return path
    candidate = package_share_dir() / "launch" / name
    if candidate.is_file():
        return candidate
    raise BringupError(f"launch file '{name}' not found (looked in . and {candidate.parent})")


def parse_launch_args(graph: LaunchGraph, items: list[str]) -> dict[str, str]:
    """``name:=value`` items -> every argument's value (defaults filled, required checked)."""
    share = {"arvla": package_share_dir()}
    given: dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise BringupError(f"launch arguments are name:=value, got '{item}'")
        name, value = item.split(":=", 1)
        graph.argument(name)  # KeyError naming the file if unknown
        given[name] = value
    values: dict[str, str] = {}
    for arg in graph.arguments:
        if arg.name in given:
            values[arg.name] = given[arg.name]
        elif arg.default is not None:
            values[arg.name] = str(resolve(arg.default, values, share))
        else:
            raise BringupError(f"launch argument '{arg.name}' is required ({arg.description})")
    return values


def _param_value(raw: Any) -> Any:
    """launch_ros reads substituted parameter strings as YAML ("true" -> bool, "2" -> int)."""
    if not isinstance(raw, str) or raw == "":
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def node_kwargs(spec: NodeSpec, values: dict[str, str]) -> dict[str, Any]:
    """Constructor keyword arguments that give an in-process node what launch_ros would."""
    from rclpy.parameter import Parameter

    from arvla.perception_params import resolve_perception_params

    share = {"arvla": package_share_dir()}
    cli: list[str] = ["--ros-args"]
    set_after = {name: _param_value(resolve(v, values, share)) for name, v in spec.overrides}
    for f in spec.params_files:
        if isinstance(f, CheckpointParams):
            picked = resolve_perception_params(*(str(resolve(v, values, share)) for v in (
                f.checkpoint, f.perception_params, f.default)), overrides=set_after)
            log.info("%s", picked.source)
            path = picked.file
        else:
            path = resolve(f, values, share)
        if not os.path.isfile(path):
            raise BringupError(f"node {spec.name}: parameters file not found: {path}")
        cli += ["--params-file", str(path)]
    overrides = [Parameter(name, value=value) for name, value in set_after.items()]
    kwargs: dict[str, Any] = {"node_name": spec.name, "cli_args": cli, "parameter_overrides": overrides}
    ns = resolve(spec.namespace, values, share) if spec.namespace is not None else ""
    if ns:
        kwargs["namespace"] = ns
    return kwargs


def enabled_nodes(graph: LaunchGraph, values: dict[str, str]) -> list[NodeSpec]:
    out = []
    for spec in graph.nodes:
        if spec.condition is not None and not _param_value(values[spec.condition.name]):
            continue
        out.append(spec)
    return out


def node_class(executable: str) -> type:
    if executable not in NODE_CLASSES:
        raise BringupError(f"no in-process node class known for executable '{executable}'")
    module, cls = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module), cls)


def start_nodes(graph: LaunchGraph, values: dict[str, str], context: Any = None) -> list[Any]:
    """Construct every enabled node of ``graph`` and check that the expert accepts perception's
    prefixes (``check_prefix_model_id``); on failure destroy those already made."""
    nodes: list[Any] = []
    try:
        specs = enabled_nodes(graph, values)
        for spec in specs:
            kwargs = node_kwargs(spec, values)
            if context is not None:
                kwargs["context"] = context
            nodes.append(node_class(spec.executable)(**kwargs))
        check_prefix_model_id(dict(zip((s.executable for s in specs), zip(specs, nodes))), values)
    except Exception:
        for n in nodes:
            n.destroy_node()
        raise
    return nodes


def check_prefix_model_id(started: dict[str, tuple[NodeSpec, Any]], values: dict[str, str]) -> None:
    """Perception and the expert in one graph: the expert FAULTs on every prefix whose model_id
    is not its checkpoint's, so refuse to start, naming the perception parameters file to use.
    ``started``: executable -> (its spec, its node)."""
    if "perception_node" not in started or "action_expert_node" not in started:
        return
    p_spec, perception = started["perception_node"]
    expert = started["action_expert_node"][1]
    made, expected = perception.backbone.model_id, expert.policy.model_id
    if not expected or made == expected:
        return
    from arvla.perception_params import checkpoint_perception

    checkpoint = str(expert.get_parameter("checkpoint").value)
    recorded = checkpoint_perception(checkpoint).settings if checkpoint else {}
    used = perception_file_in_use(p_spec, values)
    msg = (f"perception makes prefixes with model_id '{made}', but the expert checkpoint "
           f"{checkpoint} was trained on model_id '{expected}': it would FAULT on every prefix. ")
    if recorded:  # its settings are in use (a given file that differs was refused before): weights
        raise BringupError(msg + "Perception runs with the settings the checkpoint records, so its "
                                 "weights differ: the checkpoint was trained with model_path "
                                 f"{recorded.get('model_path', '')!r}, text_model_path "
                                 f"{recorded.get('text_model_path', '')!r}; pass model_path:=<those weights>")
    match = _params_file_making(expected, p_spec, values, skip=used)
    hint = (f"{match} gives that model_id: pass perception_params:={match}" if match else
            "pass perception_params:=FILE with the settings it was trained with (in a model_id, "
            "':L10' = hidden_layer 10, ':g2x2' = token_grid [2, 2])")
    raise BringupError(msg + f"The checkpoint records no perception settings (trained before they "
                             f"were recorded) and {used} makes other ones: {hint}")


def perception_file_in_use(spec: NodeSpec, values: dict[str, str]) -> str:
    """The perception parameters file the node got (without re-reading a checkpoint)."""
    share = {"arvla": package_share_dir()}
    for f in spec.params_files:
        if isinstance(f, CheckpointParams):
            return str(resolve(f.perception_params, values, share) or resolve(f.default, values, share))
    return str(resolve(spec.params_files[-1], values, share)) if spec.params_files else ""


def _params_file_making(model_id: str, spec: NodeSpec, values: dict[str, str], *, skip: str) -> str | None:
    """The package's perception parameters file (config/perception*.yaml) whose backbone makes
    ``model_id`` with this node's parameter overrides (model_path...), if any. Loads each
    candidate backbone: only on the way to an error."""
    from arvla_base.config import from_dict
    from arvla_base.params import read_node_params
    from arvla_perception.backbone import BackboneError, load_backbone
    from arvla_perception.config import PerceptionConfig, field_names

    share = {"arvla": package_share_dir()}
    fields = set(field_names())
    set_after = {name: _param_value(resolve(v, values, share)) for name, v in spec.overrides}
    for candidate in sorted((package_share_dir() / "config").glob("perception*.yaml")):
        if os.path.abspath(candidate) == os.path.abspath(skip):
            continue
        params = {k: v for k, v in {**read_node_params(candidate), **set_after}.items() if k in fields}
        try:
            if load_backbone(from_dict(PerceptionConfig, params)).model_id == model_id:
                return str(candidate)
        except (BackboneError, ValueError) as err:
            log.info("%s: %s", candidate, err)
    return None


class NodeThreads:
    """Spin each node in its own SingleThreadedExecutor and thread, as separate processes would.

    rclpy's MultiThreadedExecutor busy-spins: with the sim, perception and expert in one such
    executor the sim fell to 0.07x real time and a prefix reached the expert 15+ steps late.
    ``stop()`` joins the threads and shuts the executors down (the nodes stay the caller's).
    """

    def __init__(self, nodes: list[Any], context: Any = None):
        from rclpy.executors import SingleThreadedExecutor

        self._stop = threading.Event()
        self._executors = []
        for n in nodes:
            ex = SingleThreadedExecutor(context=context)
            ex.add_node(n)
            self._executors.append(ex)
        self._context = context
        self._threads = [threading.Thread(target=self._spin, args=(ex,), daemon=True)
                         for ex in self._executors]

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def _spin(self, ex: Any) -> None:
        import rclpy
        from rclpy.executors import ExternalShutdownException

        try:
            while not self._stop.is_set() and rclpy.ok(context=self._context):
                ex.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            self._stop.set()

    def start(self) -> "NodeThreads":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5.0)
        for ex in self._executors:
            ex.shutdown()


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(``arvla bringup``'s own arguments, rclpy's): everything from the first ``--ros-args`` on
    is rclpy's. ``name:=value`` launch arguments are not: given to rclpy.init, rcl reads each as
    a deprecated remap rule and logs a warning per argument."""
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return list(argv[:i]), list(argv[i:])
    return list(argv), []


def main(argv: list[str] | None = None) -> int:
    own, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="arvla bringup", description=__doc__.splitlines()[0],
                                     epilog="--ros-args ... at the end: passed to rclpy")
    parser.add_argument("launch_file", nargs="?", default="bringup.launch.py",
                        help="launch file (path, or name inside the package's launch/)")
    parser.add_argument("launch_args", nargs="*", help="name:=value, as for ros2 launch")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = run until Ctrl-C)")
    parser.add_argument("--show-args", action="store_true", help="print the launch arguments and exit")
    args = parser.parse_args(own)
    if args.launch_file and ":=" in args.launch_file:
        args.launch_args.insert(0, args.launch_file)
        args.launch_file = "bringup.launch.py"
    try:
        graph = parse_launch_file(find_launch_file(args.launch_file))
        if args.show_args:
            for a in graph.arguments:
                default = "(required)" if a.default is None else f"default {a.default}"
                print(f"  {a.name:<20} {default}\n      {a.description}")
            return 0
        values = parse_launch_args(graph, args.launch_args)
    except (BringupError, LaunchParseError, KeyError) as err:
        print(f"arvla bringup: {err}", file=sys.stderr)
        return 2

    import rclpy

    if not log.handlers:  # "arvla bringup: perception settings from ..." on stdout
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("arvla bringup: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    with rclpy.init(args=ros_args):
        try:
            nodes = start_nodes(graph, values)
        except Exception as err:  # noqa: BLE001 - report which node could not start, then exit 1
            print(f"arvla bringup: cannot start the graph: {err}", file=sys.stderr)
            return 1
        names = ", ".join(n.get_fully_qualified_name() for n in nodes)
        print(f"arvla bringup: {len(nodes)} nodes from {graph.path.name} running in one process: {names}",
              flush=True)
        spinner = NodeThreads(nodes)
        spinner.start()
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        try:
            while spinner.running and rclpy.ok() and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            spinner.stop()
            for n in nodes:
                n.destroy_node()
    return 0

"""Static checks of launch/ and config/: what `ros2 launch` would start exists and is declared.

Where launch_ros is importable (a real ROS 2 install) the launch descriptions are also built.
"""

from __future__ import annotations

import ast
import pathlib

import pytest
import yaml

from arvla.bringup import NODE_CLASSES, node_class, package_share_dir, parse_launch_args
from arvla.launch_graph import Arg, CheckpointParams, LaunchParseError, PackageShare, parse_launch_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONSOLE_SCRIPTS":
            items = [ast.literal_eval(e) for e in node.value.elts]
            return {k.strip(): v.strip() for k, v in (i.split("=") for i in items)}
    raise AssertionError("no CONSOLE_SCRIPTS in setup.py")


def declared_parameters(executable: str) -> set[str]:
    """Parameter names the node class declares: start it for real in a private context."""
    import rclpy

    from arvla_action_expert.node import ActionExpertNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        cls = node_class(executable)
        kwargs = {"context": ctx}
        if cls is ActionExpertNode:
            # a node without a checkpoint refuses to start; hand it a tiny untrained policy
            from arvla_action_expert.model import ExpertConfig
            from arvla_action_expert.policy import ExpertPolicy

            cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=8, max_prefix_tokens=8,
                               n_embd=32, n_layer=1, n_head=2, ffn=64, window=8, head="regression")
            kwargs["policy"] = ExpertPolicy.build_untrained(cfg)
            # its joints come from the params file (the node refuses to guess them)
            kwargs["cli_args"] = ["--ros-args", "--params-file", str(ROOT / "config" / "action_expert.yaml")]
        node = cls(**kwargs)
        try:
            return {name for name in node._parameters}
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.fixture(scope="module")
def declared_cache():
    return {}


def test_there_are_launch_files():
    names = {p.name for p in LAUNCH_FILES}
    assert {"perception.launch.py", "action_expert.launch.py", "bringup.launch.py"} <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_names_real_things(path, declared_cache):
    compile(path.read_text(), str(path), "exec")
    graph = parse_launch_file(path)
    assert graph.nodes, f"{path.name} starts no node"
    scripts = console_scripts()
    arg_names = {a.name for a in graph.arguments}
    for a in graph.arguments:
        assert a.description, f"{path.name}: launch argument {a.name} has no description"
    for spec in graph.nodes:
        assert spec.package == "arvla"
        assert spec.executable in scripts, f"{spec.executable} is not a console_scripts entry point"
        assert spec.executable in NODE_CLASSES
        # the in-process class lives in the module the console script runs
        assert NODE_CLASSES[spec.executable].split(":")[0] == scripts[spec.executable].split(":")[0]
        picked = [f for f in spec.params_files if isinstance(f, CheckpointParams)]
        for value in [*spec.params_files, spec.namespace, spec.condition, *(v for _, v in spec.overrides),
                      *(v for c in picked for v in (c.checkpoint, c.perception_params, c.default))]:
            if isinstance(value, Arg):
                assert value.name in arg_names, f"{path.name}: {spec.name} uses undeclared argument {value.name}"
        if spec.executable not in declared_cache:
            declared_cache[spec.executable] = declared_parameters(spec.executable)
        declared = declared_cache[spec.executable]
        for name, _ in spec.overrides:
            assert name in declared, f"{path.name}: {spec.name} sets undeclared parameter '{name}'"
        for f in spec.params_files:
            if isinstance(f, CheckpointParams):  # '' = f.default with the checkpoint's settings
                assert graph.argument(f.perception_params.name).default == ""
                f = f.default
            default = graph.argument(f.name).default if isinstance(f, Arg) else f
            assert isinstance(default, PackageShare), "params files default to the package's config/"
            file = package_share_dir().joinpath(*default.parts)
            assert file.is_file(), f"{path.name}: params file {file} does not exist"
            doc = yaml.safe_load(file.read_text())
            assert spec.name in doc, f"{file.name} has no block for node {spec.name}"
            params = doc[spec.name]["ros__parameters"]
            unknown = sorted(set(params) - declared)
            assert not unknown, f"{file.name} sets parameters {spec.name} does not declare: {unknown}"


def test_every_config_params_file_matches_a_node(declared_cache):
    """Also example params files no launch file names by default (e.g. generic arm configs)."""
    node_for = {"arvla_perception": "perception_node", "arvla_action_expert": "action_expert_node",
                "arvla_sim": "sim_node"}
    checked = 0
    for file in sorted((ROOT / "config").glob("*.yaml")) + sorted((ROOT / "config" / "examples").glob("*.yaml")):
        doc = yaml.safe_load(file.read_text()) or {}
        for node_name, block in doc.items():
            if not (isinstance(block, dict) and "ros__parameters" in block):
                continue
            if file.parent.name == "examples" and node_name not in node_for:
                continue  # e.g. the example ros2_controllers.yaml: blocks of other nodes
            assert node_name in node_for, f"{file.name}: unknown node block {node_name}"
            exe = node_for[node_name]
            if exe not in declared_cache:
                declared_cache[exe] = declared_parameters(exe)
            unknown = sorted(set(block["ros__parameters"]) - declared_cache[exe])
            assert not unknown, f"{file.name}: {node_name} does not declare {unknown}"
            checked += 1
    assert checked >= 3


def test_required_argument_and_unknown_argument_are_errors():
    from arvla.bringup import BringupError

    graph = parse_launch_file(ROOT / "launch" / "bringup.launch.py")
    with pytest.raises(BringupError, match="'checkpoint' is required"):
        parse_launch_args(graph, [])
    with pytest.raises(KeyError, match="no launch argument 'chekpoint'"):
        parse_launch_args(graph, ["chekpoint:=x"])
    values = parse_launch_args(graph, ["checkpoint:=/tmp/x"])
    assert values["expert_params"].endswith("config/action_expert.yaml")
    assert values["with_sim"] == "false"


def test_parser_refuses_what_it_does_not_understand(tmp_path):
    bad = tmp_path / "bad.launch.py"
    bad.write_text("from launch import LaunchDescription\n"
                   "def generate_launch_description():\n"
                   "    import os\n"
                   "    return LaunchDescription([])\n")
    with pytest.raises(LaunchParseError, match=r"bad\.launch\.py:3: unsupported statement"):
        parse_launch_file(bad)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds_where_launch_ros_exists(path):
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here (PyPI ROS)")
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert ld.entities

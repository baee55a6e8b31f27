"""The package metadata, entry points and the colcon-built interfaces hang together."""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _console_scripts() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONSOLE_SCRIPTS":
            return [ast.literal_eval(elt) for elt in node.value.elts]
    raise AssertionError("setup.py has no CONSOLE_SCRIPTS list")


def test_package_xml_and_setup_py_agree():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    name, version = root.findtext("name"), root.findtext("version")
    setup_src = (ROOT / "setup.py").read_text()
    assert re.search(rf'PACKAGE = "{name}"', setup_src), "setup.py PACKAGE differs from package.xml <name>"
    out = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == [name, version]
    import arvla

    assert arvla.__version__ == version
    assert (ROOT / "resource" / name).is_file()
    assert root.find("export/build_type").text == "ament_python"


def test_package_xml_declares_runtime_dependencies():
    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot() if e.tag.endswith("depend")}
    for dep in ["rclpy", "sensor_msgs", "trajectory_msgs", "std_msgs", "builtin_interfaces",
                "diagnostic_msgs", "arvla_msgs", "launch_ros", "cv_bridge", "python3-torch"]:
        assert dep in deps, f"package.xml lacks a dependency on {dep}"


@pytest.mark.parametrize("spec", _console_scripts())
def test_console_script_imports(spec):
    name, target = (s.strip() for s in spec.split("="))
    module, func = target.split(":")
    obj = getattr(importlib.import_module(module), func)
    assert callable(obj), f"console script {name} -> {target} is not callable"


def test_arvla_msgs_is_the_colcon_built_package():
    import arvla_msgs
    from arvla_msgs.msg import ExpertStatus, VLPrefix
    from arvla_msgs.srv import ResetMemory, SetInstruction

    if not os.environ.get("ROS_DISTRO") or "install" in arvla_msgs.__file__:
        assert "install" in pathlib.Path(arvla_msgs.__file__).parts, arvla_msgs.__file__
    msg = VLPrefix()
    assert {"header", "frame_seq", "instruction", "model_id", "token_count", "dim", "data",
            "compute_stamp"} <= set(msg.get_fields_and_field_types())
    assert ExpertStatus.STATE_FAULT != ExpertStatus.STATE_RUNNING
    assert "instruction" in SetInstruction.Request.get_fields_and_field_types()
    assert "clear_prefix" in ResetMemory.Request.get_fields_and_field_types()


def test_cli_usage_and_unknown_command(capsys):
    from arvla.cli import main

    assert main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_arvla_doctor_passes():
    proc = subprocess.run(["arvla", "doctor", "--timeout", "20"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "round trip" in proc.stdout and "all checks passed" in proc.stdout


def test_arvla_doctor_fails_clearly_without_ros_distro():
    env = dict(os.environ)
    env.pop("ROS_DISTRO", None)
    proc = subprocess.run(["arvla", "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "ROS_DISTRO is not set" in proc.stdout

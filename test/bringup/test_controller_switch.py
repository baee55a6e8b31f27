"""Coexisting with MoveIt: the controller_manager switch is used where it exists, skipped cleanly where not."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
from rclpy.node import Node

from arvla.controller_switch import switch_controllers

HAVE_CM = importlib.util.find_spec("controller_manager_msgs") is not None


def test_nothing_to_switch_is_a_skip(ros_context):
    node = Node("switch_test_empty", context=ros_context)
    try:
        r = switch_controllers(node, activate=[], deactivate=[])
    finally:
        node.destroy_node()
    assert r.skipped and not r.ok and "nothing to switch" in r.message


@pytest.mark.skipif(HAVE_CM, reason="controller_manager_msgs installed: the skip path does not apply")
def test_without_ros2_control_the_switch_is_skipped_with_advice(ros_context):
    node = Node("switch_test", context=ros_context)
    try:
        r = switch_controllers(node, activate=["arvla_arm_controller"], deactivate=["arm_controller"])
    finally:
        node.destroy_node()
    assert r.skipped and not r.ok
    assert "/arvla/enable" in r.message


@pytest.mark.skipif(not HAVE_CM, reason="controller_manager_msgs not installable here")
def test_missing_controller_manager_is_a_skip_not_a_hang(ros_context):
    node = Node("switch_test_nocm", context=ros_context)
    try:
        r = switch_controllers(node, activate=["a"], deactivate=["b"], service="/no_cm/switch_controller",
                               timeout_s=0.5)
    finally:
        node.destroy_node()
    assert r.skipped and "no controller manager" in r.message


def test_cli_exit_code_says_skipped():
    proc = subprocess.run(["arvla", "switch-controller", "--activate", "x", "--timeout", "0.5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout

"""Shared pytest fixtures.

ROS isolation: every test session picks its own ROS_DOMAIN_ID and restricts discovery to
localhost *before* any rclpy context exists, so parallel runs and other machines never cross.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

if "ARVLA_TEST_DOMAIN_ID" not in os.environ:
    os.environ["ARVLA_TEST_DOMAIN_ID"] = str(100 + os.getpid() % 100)
os.environ["ROS_DOMAIN_ID"] = os.environ["ARVLA_TEST_DOMAIN_ID"]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy Context for one test; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy") if os.environ.get("ARVLA_ALLOW_NO_ROS") else __import__("rclpy")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


@pytest.fixture
def executor(ros_context):
    """A SingleThreadedExecutor on ``ros_context``; nodes added to it are destroyed after the test."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ros_context)
    yield ex
    for node in list(ex.get_nodes()):
        ex.remove_node(node)
        node.destroy_node()
    ex.shutdown()


@pytest.fixture
def repo_root() -> pathlib.Path:
    return ROOT


sys.path.insert(0, str(ROOT))

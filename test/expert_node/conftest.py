"""Fixtures of the action expert node tests (the harness itself is in expert_harness.py)."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from expert_harness import Harness  # noqa: E402


@pytest.fixture
def make_harness(ros_context, executor):
    """Factory: ``make_harness(policy="tiny", **node_params)`` -> Harness on a fresh context."""

    def make(**kwargs: Any) -> Harness:
        return Harness(ros_context, executor, **kwargs)

    return make

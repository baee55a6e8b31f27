"""Fixtures for bring-up tests."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from bringup_helpers import PANDA_ARM, write_untrained_checkpoint  # noqa: E402


@pytest.fixture
def panda_checkpoint(tmp_path) -> pathlib.Path:
    """Panda arm + gripper (8 joints, as the embedded sim's arm_controller), 1280-d prefix tokens
    (the default perception backbone's width)."""
    return write_untrained_checkpoint(tmp_path / "expert", joints=PANDA_ARM, prefix_dim=1280)

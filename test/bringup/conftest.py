"""Fixtures for bring-up tests."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from bringup_helpers import (PANDA_ARM, demo_perception_settings, perception_model_id,  # noqa: E402
                             write_untrained_checkpoint)


@pytest.fixture
def panda_checkpoint(tmp_path) -> pathlib.Path:
    """Panda arm + gripper (8 joints, as the embedded sim's arm_controller), 1280-d prefix tokens
    (the default perception backbone's width)."""
    return write_untrained_checkpoint(tmp_path / "expert", joints=PANDA_ARM, prefix_dim=1280)


@pytest.fixture(scope="session")
def demo_perception() -> tuple[dict, str, int]:
    """(settings, model_id, token width) of `arvla demo`'s perception (block 10: 5 x 384)."""
    settings = demo_perception_settings()
    return (settings, *perception_model_id(settings))


@pytest.fixture
def demo_style_checkpoint(tmp_path, demo_perception) -> pathlib.Path:
    """Like the demo's trained expert: trained on block-10 prefixes (model_id and width of the
    demo's perception) and recording those perception settings, as training now does."""
    settings, model_id, dim = demo_perception
    return write_untrained_checkpoint(tmp_path / "demo_expert", joints=PANDA_ARM, prefix_dim=dim,
                                      model_id=model_id, perception=settings)

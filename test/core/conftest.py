"""Core tests: put this directory on sys.path so they share ``core_helpers``."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


@pytest.fixture
def one_thread():
    """Tiny models: one thread is fastest, and spares a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Core tests: put this directory on sys.path so they share ``core_helpers``."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

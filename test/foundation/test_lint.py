"""Style is checked, not hoped: ruff with the committed ruff.toml (skipped where ruff is missing)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _ruff() -> list[str] | None:
    exe = shutil.which("ruff") or (pathlib.Path(sys.executable).parent / "ruff")
    if isinstance(exe, pathlib.Path) and not exe.is_file():
        return None
    return [str(exe)]


def test_ruff_finds_nothing():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (requirements/python.txt lists it)")
    out = subprocess.run([*ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

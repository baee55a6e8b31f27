"""The suite's gate itself: a passing test that reports a crash or an unsafe command must still
fail the session, and the summary must show the counts (run in a child pytest)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.parametrize("report,code", [("LEDGER.input('probe')", 0),
                                         ("LEDGER.unsafe_command('forged command')", 1),
                                         ("LEDGER.crash('forged crash')", 1)])
def test_summary_counts_and_fails_the_session_on_crash_or_unsafe(tmp_path, report, code):
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(f"from faultlib import LEDGER\n\n\ndef test_probe():\n    {report}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent / "expert_node"),
                                                       os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                          str(tmp_path), "-c", os.devnull, str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stdout[-3000:] + run.stderr[-2000:]
    assert "arvla fault suite" in run.stdout and "1 passed" in run.stdout
    crashes = "crashes:           1" if "crash(" in report else "crashes:           0"
    unsafe = "unsafe commands:   1" if "unsafe" in report else "unsafe commands:   0"
    assert crashes in run.stdout and unsafe in run.stdout, run.stdout

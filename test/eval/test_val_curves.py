"""bench/val_curves.py joins a two-stage AR run's held-out curves on one step axis (stage 2's
steps after stage 1's) and plots experts and baselines side by side."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "val_curves.py"


def _load():
    spec = importlib.util.spec_from_file_location("val_curves_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(d: pathlib.Path, steps: list[int], losses: list[float], step: int) -> None:
    d.mkdir(parents=True)
    (d / "val_curve.json").write_text(json.dumps({"steps": steps, "losses": losses}))
    (d / "config.json").write_text(json.dumps({"meta": {"step": step}}))


def test_two_stage_run_is_one_curve_and_plots(tmp_path):
    run = tmp_path / "ar"
    _checkpoint(run / "stage1", [250, 600], [0.5, 0.4], 600)
    _checkpoint(run / "stage2", [250, 1400], [0.3, 0.35], 1400)
    _checkpoint(tmp_path / "chunk", [2000, 4000], [0.2, 0.1], 4000)
    steps, losses, starts = _load().read_curve(run)
    assert steps == [250, 600, 850, 2000] and losses == [0.5, 0.4, 0.3, 0.35] and starts == [600]
    png = tmp_path / "curves.png"
    out = subprocess.run([sys.executable, str(BENCH), "--runs", f"AR={run}",
                          f"chunk={tmp_path / 'chunk'}", "--out", str(png)],
                         capture_output=True, text=True, check=True).stdout
    assert "AR: held-out loss 0.3500 at step 2000, lowest 0.3000 at step 850" in out
    assert png.stat().st_size > 1000

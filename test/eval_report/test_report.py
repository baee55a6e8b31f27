"""write_report on synthetic records: files, table rows, numbers that match the metrics."""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from synthetic_records import make_record, make_records  # noqa: E402

from arvla_eval import metrics  # noqa: E402
from arvla_eval.records import load_records, save_records  # noqa: E402
from arvla_eval.report import report_rows, rows_markdown, write_report  # noqa: E402


def test_report_files_and_table(tmp_path):
    records = make_records(seeds=range(3), tasks=("pick_lift", "cued_reach"))
    md = write_report(records, tmp_path / "rep", title="AR vs chunked", notes="trained 5 min")
    out = md.parent
    for name in ("report.md", "report.html", "trajectories.png", "jerk.png", "success.png",
                 "staleness.png", "episode_ar_pick_lift_0.gif"):
        f = out / name
        assert f.is_file() and f.stat().st_size > 200, name
    for name in ("trajectories.png", "jerk.png", "success.png", "staleness.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "episode_ar_pick_lift_0.gif").read_bytes()[:6] == b"GIF89a"
    text = md.read_text()
    assert text.startswith("# AR vs chunked") and "trained 5 min" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6  # header + policy x task
    assert table[1].startswith("| ar | pick_lift | 3/3 (100%)")  # AR listed first
    assert any(line.startswith("| chunk | cued_reach | 2/3 (67%)") for line in table)
    html = (out / "report.html").read_text()
    assert html.count("<tr>") == 7 and "src='jerk.png'" in html and "<script" not in html
    for name in ("trajectories.png", "jerk.png", "success.png", "staleness.png"):
        assert f"({name})" in text


def test_one_video_per_policy_and_task_preferring_a_success(tmp_path):
    recs = [make_record("ar", task, seed, success=seed == 1, frames=True)
            for task in ("pick_lift", "push") for seed in range(3)]
    recs += [make_record("chunk", "push", seed, success=False, frames=True) for seed in range(2)]
    md = write_report(recs, tmp_path / "rep", title="videos")
    names = sorted(f.name for f in md.parent.glob("*.gif"))
    assert names == ["episode_ar_pick_lift_1.gif", "episode_ar_push_1.gif",
                     "episode_chunk_push_0.gif"]
    text = md.read_text()
    assert "ar: pick_lift, seed 1 (success)" in text and "chunk: push, seed 0 (failure)" in text


def test_rows_match_the_metrics():
    recs = [make_record("ar", "t", s, success=s < 2) for s in range(3)]
    recs += [make_record("chunk", "t", s, chunk=8, success=False) for s in range(3)]
    rows = report_rows(recs)
    ar, ch = rows
    assert (ar.policy, ar.successes, ar.n) == ("ar", 2, 3)
    rate = metrics.success_rate([True, True, False])
    assert (ar.ci_low, ar.ci_high) == (rate.ci_low, rate.ci_high)
    expect_jerk = np.mean([metrics.rms_jerk(r.positions, r.dt) for r in recs[:3]])
    assert ar.rms_jerk == pytest.approx(expect_jerk)
    expect_peak = np.mean([metrics.peak_velocity(r.positions, r.dt) for r in recs[:3]])
    assert ar.peak_velocity == pytest.approx(expect_peak)
    lat = np.concatenate([r.step_latency_s for r in recs[:3]])
    assert ar.latency_p99_ms == pytest.approx(np.percentile(lat, 99) * 1e3)
    stale = np.concatenate([r.staleness_steps[r.staleness_steps >= 0] for r in recs[:3]])
    assert ar.staleness_p95 == pytest.approx(np.percentile(stale, 95))
    # chunk boundaries make the chunked trajectory rougher; no success -> no time
    assert ch.rms_jerk > 5 * ar.rms_jerk and ch.sparc < ar.sparc
    assert math.isnan(ch.time_to_success_s) and "| – |" in rows_markdown([ch])


def test_records_from_disk_and_edge_cases(tmp_path):
    recs = [make_record("ar", "t", 0), make_record("chunk", "t", 0, chunk=5)]
    loaded = load_records(save_records(tmp_path / "r.npz", recs))
    md = write_report(loaded, tmp_path / "rep", title="one seed")
    assert not list(md.parent.glob("*.gif"))  # no frames, no video
    # a policy that never had a prefix (staleness -1 throughout) still reports
    short = make_record("ar", "t", 1)
    short.staleness_steps[:] = -1
    rows = report_rows([short])
    assert math.isnan(rows[0].staleness_p50)
    with pytest.raises(ValueError, match="no records"):
        write_report([], tmp_path / "none", title="x")

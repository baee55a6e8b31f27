"""Smoothness of EpisodeRecords from the raw joint samples at their stamps (issue #14).

A record built the way ``EpisodeMonitor.end`` builds one -- 100 Hz /joint_states with 2-5 ms
of stamp jitter, 20 Hz ticks with the same jitter, the tick's position = the newest sample at
or before it, the tick's command = the point in execution, which targets the previous tick +
one period ('seamless' streaming) -- must report the motion's analytic jerk when it keeps the
raw samples and the commands' target times, and the old (jitter-inflated) readings when it
does not (older record files).
"""

from __future__ import annotations

import json
import math
import threading
from types import SimpleNamespace as NS

import numpy as np
import pytest

from arvla_eval import metrics
from arvla_eval.records import (EpisodeRecord, RecordError, command_jerk, load_records,
                                measured_metrics, save_records, summarize, summary_table)
from arvla_eval.report import report_rows, rows_markdown, write_report
from arvla_eval.rollout import EpisodeMonitor

JOINTS = ["j1", "j2"]
RATE = 20.0
A, T, START = 1.0, 1.44, 0.5  # minimum-jerk reach: RMS jerk 60 A / T^3 sqrt(0.2) = 8.99 rad/s^3


def reach(t: np.ndarray) -> np.ndarray:
    s = np.clip((t - START) / T, 0.0, 1.0)
    x = A * (10 * s**3 - 15 * s**4 + 6 * s**5)
    return np.stack([x, -0.5 * x], axis=1)


def analytic_rms(span_s: float, dt: float = 1 / RATE) -> float:
    """RMS of the closed-form jerk over what the grid's m - 3 third differences cover."""
    m = int(math.floor(span_s / dt * (1 + 1e-12))) + 1
    return 60 * A / T**3 * math.sqrt(0.2 * T / ((m - 3) * dt)) * math.hypot(1.0, 0.5)


def jittered_record(policy="ar", seed=0, *, jitter=0.004, keep_samples=True,
                    keep_command_times=True, duration=2.44) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    jt = np.arange(0.0, duration + 1e-9, 0.01)
    jt = jt + rng.normal(0, jitter, jt.size)
    jq = reach(jt)
    ticks = np.arange(0.02, duration - 0.03, 1 / RATE)
    ticks = ticks + rng.uniform(-jitter, jitter, ticks.size)
    order = np.argsort(jt)
    idx = np.clip(np.searchsorted(jt[order], ticks, side="right") - 1, 0, jt.size - 1)
    n = ticks.size
    targets = np.concatenate([ticks[:1], ticks[:-1]]) + 1 / RATE  # set by the previous tick
    return EpisodeRecord(
        policy=policy, task="reach", seed=seed, success=True, time_to_success=float(ticks[-1]),
        control_rate_hz=RATE, joint_names=JOINTS, times=ticks, positions=jq[order][idx],
        commands=reach(targets), staleness_steps=np.full(n, 1),
        step_latency_s=np.full(n, 0.002),
        joint_times=jt if keep_samples else None, joint_positions=jq if keep_samples else None,
        command_times=targets if keep_command_times else None)


def test_records_measure_jerk_from_the_stamped_samples():
    rec = jittered_record()
    m = measured_metrics(rec)
    assert m is not None
    span = rec.joint_times.max() - rec.joint_times.min()
    assert m.rms_jerk == pytest.approx(analytic_rms(span), rel=0.10)
    old = metrics.rms_jerk(rec.positions, rec.dt)  # what the table read before
    assert old > 5 * m.rms_jerk
    # without the raw samples (an older record) the old reading is what remains
    legacy = jittered_record(keep_samples=False)
    assert measured_metrics(legacy).rms_jerk == pytest.approx(old)
    # the commands at the times they target, on the same grid
    span_c = np.ptp(np.unique(rec.command_times))
    assert command_jerk(rec) == pytest.approx(analytic_rms(span_c), rel=0.10)
    assert metrics.rms_jerk(rec.commands, rec.dt) > 3 * command_jerk(rec)  # constant dt
    # an older record: no target times, so tick + one period, off by the ticks' jitter
    assert command_jerk(jittered_record(keep_command_times=False)) > 3 * command_jerk(rec)


def test_summaries_and_tables_carry_the_command_jerk():
    recs = [jittered_record("ar", s) for s in range(3)] + [jittered_record("chunk", 9)]
    out = summarize(recs)
    ar = out[0]
    assert ar.rms_jerk == pytest.approx(np.mean([measured_metrics(r).rms_jerk for r in recs[:3]]))
    assert ar.command_jerk == pytest.approx(np.mean([command_jerk(r) for r in recs[:3]]))
    assert ar.rms_jerk < 15 and ar.command_jerk < 15
    table = summary_table(out)
    assert "RMS jerk of commands (rad/s³)" in table.splitlines()[0]
    assert table.splitlines()[1].count("---") == 10
    assert f"| {ar.command_jerk:.1f} |" in table.splitlines()[2]
    rows = report_rows(recs)
    assert rows[0].command_jerk == pytest.approx(ar.command_jerk)
    assert rows[0].peak_velocity == pytest.approx(
        np.mean([measured_metrics(r).peak_velocity for r in recs[:3]]))
    md = rows_markdown(rows)
    assert "RMS jerk of commands (rad/s³)" in md and f"| {rows[0].command_jerk:.1f} |" in md


def test_report_says_how_jerk_was_read(tmp_path):
    stamped = [jittered_record("ar", s) for s in range(2)]
    text = write_report(stamped, tmp_path / "a", title="t").read_text()
    assert "at their own stamps" in text and "(2 of" not in text
    assert (tmp_path / "a" / "jerk.png").is_file()
    mixed = stamped + [jittered_record("chunk", 5, keep_samples=False)]
    text = write_report(mixed, tmp_path / "b", title="t").read_text()
    assert "(2 of 3 episodes)" in text and "constant dt" in text


def test_round_trip_keeps_the_samples_and_older_files_load(tmp_path):
    recs = [jittered_record("ar", 1), jittered_record("chunk", 2, keep_samples=False)]
    back = load_records(save_records(tmp_path / "r.npz", recs))
    np.testing.assert_array_equal(back[0].joint_times, recs[0].joint_times)
    np.testing.assert_array_equal(back[0].joint_positions, recs[0].joint_positions)
    assert back[1].joint_times is None and back[1].joint_positions is None
    np.testing.assert_array_equal(back[0].command_times, recs[0].command_times)
    # a file written before these were kept: no "optional_arrays", no arrays
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        data = {k: z[k] for k in z.files if "_times" not in k and "joint_" not in k}
    meta = json.loads(str(data["__meta__"]))
    for m in meta["records"]:
        del m["optional_arrays"]
    data["__meta__"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **data)
    old = load_records(tmp_path / "old.npz")
    assert all(r.joint_times is None and r.command_times is None for r in old)
    assert measured_metrics(old[0]).rms_jerk == pytest.approx(
        metrics.rms_jerk(recs[0].positions, recs[0].dt))
    # a file that says it has them but lacks them is an error
    data["__meta__"] = np.asarray(json.dumps({**meta, "records": [
        {**m, "optional_arrays": ["joint_times", "joint_positions"]} for m in meta["records"]]}))
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(RecordError, match="lacks arrays.*joint_times"):
        load_records(tmp_path / "bad.npz")


def test_sample_validation_names_the_field():
    good = jittered_record()
    with pytest.raises(RecordError, match="come together"):
        EpisodeRecord(**{**good.__dict__, "joint_positions": None})
    with pytest.raises(RecordError, match="joint_positions must be"):
        EpisodeRecord(**{**good.__dict__, "joint_positions": good.joint_positions[:, :1]})
    bad = good.joint_positions.copy()
    bad[3, 1] = np.nan
    with pytest.raises(RecordError, match="non-finite"):
        EpisodeRecord(**{**good.__dict__, "joint_positions": bad})
    with pytest.raises(RecordError, match="command_times must be"):
        EpisodeRecord(**{**good.__dict__, "command_times": good.command_times[1:]})


def test_too_short_episodes_have_no_jerk():
    rec = jittered_record(duration=0.12)  # under 3 control periods: fewer than 4 grid points
    assert measured_metrics(rec) is None and math.isnan(command_jerk(rec))
    assert math.isnan(summarize([rec])[0].rms_jerk)


def _stamp(ns: int) -> NS:
    return NS(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def test_monitor_records_raw_samples_and_command_target_times():
    """EpisodeMonitor without ROS: its callbacks fed message-shaped objects, then end()."""
    mon = EpisodeMonitor.__new__(EpisodeMonitor)  # no Node: callbacks and end() use buffers only
    mon._lock, mon.joint_names, mon.keep_frames, mon.clock_ns = threading.Lock(), JOINTS, False, 0
    mon.begin()
    ns, period = 1_000_000_000, 50_000_000
    t0 = 5 * ns
    mon.set_start(t0)
    rng = np.random.default_rng(0)
    jt = 4.9 * ns + np.arange(300) * 10_000_000 + rng.integers(-2_000_000, 2_000_000, 300)
    for t in jt[rng.permutation(jt.size)]:  # arrival order is not stamp order
        q = reach(np.array([(t - t0) * 1e-9]))[0]
        mon._on_joints(NS(header=NS(stamp=_stamp(int(t))), name=["j2", "j1", "finger"],
                          position=[q[1], q[0], 0.04]))
    ticks = t0 + np.arange(40) * period + rng.integers(0, 8_000_000, 40)  # late by 0-8 ms
    targets = []
    for k, tick in enumerate(ticks):
        if k == 12:  # this tick published nothing: the last command holds
            targets.append(targets[-1])
        else:
            target = int(ticks[k - 1] + period) if k else int(tick + period)  # seamless
            targets.append(target)
            pos = reach(np.array([(target - t0) * 1e-9]))[0]
            mon._on_traj(NS(header=NS(stamp=_stamp(int(tick))), joint_names=["j2", "j1"],
                            points=[NS(positions=[pos[1], pos[0]],
                                       time_from_start=_stamp(target - int(tick)))]))
        mon._on_status(NS(header=NS(stamp=_stamp(int(tick))), step=k, staleness_steps=1,
                          step_latency_sec=0.002))
    mon.success_ns = int(ticks[30])  # the 31st tick is the last that counts
    rec = mon.end(policy="ar", task="reach", seed=0, control_rate_hz=RATE, failed=False)
    assert rec.n_ticks == 31
    js = np.sort(jt[jt >= t0])  # set_start drops nothing here: all arrived after it
    first = js[js <= ticks[0]].max()  # the sample tick 0 read
    expect = js[(js >= first) & (js <= ticks[30])]
    start = int(ticks[0])  # the record's times count from the first tick
    np.testing.assert_allclose(rec.joint_times, (expect - start) * 1e-9)
    np.testing.assert_allclose(rec.joint_positions, reach((expect - t0) * 1e-9))
    np.testing.assert_allclose(rec.command_times, (np.asarray(targets[:31]) - start) * 1e-9)
    np.testing.assert_allclose(rec.commands, reach(rec.command_times + (start - t0) * 1e-9))
    # a command sent with stamp 0 (start on arrival) targets its tick + one period
    mon.begin()
    mon.set_start(t0)
    for k in range(3):
        mon._on_traj(NS(header=NS(stamp=_stamp(0)), joint_names=JOINTS,
                        points=[NS(positions=[0.1 * k, 0.0], time_from_start=_stamp(period))]))
        mon._on_joints(NS(header=NS(stamp=_stamp(t0 + k * period)), name=JOINTS, position=[0, 0]))
        mon._on_status(NS(header=NS(stamp=_stamp(t0 + k * period + 3_000_000)), step=k,
                          staleness_steps=1, step_latency_sec=0.002))
    rec = mon.end(policy="ar", task="reach", seed=0, control_rate_hz=RATE, failed=False)
    np.testing.assert_allclose(rec.command_times, np.arange(3) * 0.05 + 0.05)  # from tick 0

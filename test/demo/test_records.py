"""EpisodeRecord files: round trip, validation, summaries (ROS-free)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from arvla_eval.records import (EpisodeRecord, RecordError, load_records, save_records, summarize,
                                summary_table)

JOINTS = [f"j{i}" for i in range(3)]


def make_record(policy="ar", task="pick_lift", seed=0, *, T=40, success=True, frames=False):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 20.0
    pos = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0)
    return EpisodeRecord(
        policy=policy, task=task, seed=seed, success=success,
        time_to_success=float(t[-1]) if success else None, control_rate_hz=20.0,
        joint_names=JOINTS, times=t, positions=pos, commands=pos + 0.01,
        staleness_steps=np.where(np.arange(T) < 2, -1, np.arange(T) % 5),
        step_latency_s=np.full(T, 0.002),
        frames=rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8) if frames else None)


def test_round_trip_keeps_every_field(tmp_path):
    records = [make_record(seed=1, frames=True), make_record("chunk", "push", 2, success=False),
               make_record("scripted", "cued_reach", 3, T=1)]
    path = save_records(tmp_path / "r.npz", records)
    back = load_records(path)
    assert len(back) == 3
    for a, b in zip(records, back):
        for f in ("policy", "task", "seed", "success", "time_to_success", "control_rate_hz", "joint_names"):
            assert getattr(a, f) == getattr(b, f), f
        for f in ("times", "positions", "commands", "staleness_steps", "step_latency_s"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert (a.frames is None) == (b.frames is None)
    np.testing.assert_array_equal(records[0].frames, back[0].frames)
    assert back[1].time_to_success is None
    # no pickled objects inside: every member is a plain .npy readable without pickle
    with zipfile.ZipFile(path) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    assert not list(tmp_path.glob("*.tmp"))


def test_validation_names_the_field():
    good = make_record()
    with pytest.raises(RecordError, match="positions must be"):
        EpisodeRecord(**{**good.__dict__, "positions": good.positions[:, :2]})
    with pytest.raises(RecordError, match="success without time_to_success"):
        EpisodeRecord(**{**good.__dict__, "time_to_success": None})
    with pytest.raises(RecordError, match="times must increase"):
        EpisodeRecord(**{**good.__dict__, "times": good.times[::-1].copy()})


def test_load_errors(tmp_path):
    with pytest.raises(RecordError, match="not found"):
        load_records(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(RecordError, match="__meta__"):
        load_records(tmp_path / "other.npz")
    np.savez(tmp_path / "v.npz", __meta__=np.asarray(json.dumps({"version": 99, "records": []})))
    with pytest.raises(RecordError, match="version 99"):
        load_records(tmp_path / "v.npz")
    with pytest.raises(RecordError, match=".npz"):
        save_records(tmp_path / "r.json", [])


def test_summary_groups_by_policy_and_task():
    recs = [make_record("ar", "push", s, success=s % 2 == 0) for s in range(4)]
    recs += [make_record("scripted", "push", 9)]
    out = summarize(recs)
    assert [(s.policy, s.task) for s in out] == [("ar", "push"), ("scripted", "push")]
    ar = out[0]
    assert (ar.success.successes, ar.success.n) == (2, 4)
    assert ar.time_to_success.n_success == 2
    assert ar.staleness is not None and ar.staleness.n == 4 * 38   # the -1 ticks are not staleness
    assert ar.rms_jerk > 0 and ar.sparc < 0
    table = summary_table(out)
    assert "| ar | push | 2/4 (50%)" in table and "| scripted | push | 1/1 (100%)" in table

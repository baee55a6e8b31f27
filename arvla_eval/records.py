"""Closed-loop evaluation records: one ``EpisodeRecord`` per episode of one policy (ROS-free).

``rollout.run_episodes`` produces them from the real ROS graph; reports, plots and the demo
consume them. They are stored in ONE ``.npz`` file: the arrays of record ``i`` under
``"<i>/<field>"`` and every scalar / list field of all records as JSON text under
``"__meta__"`` -- readable with ``allow_pickle=False`` (no pickle anywhere), written atomically
(temp file in the same directory, fsync, ``os.replace``) so a crash never leaves half a file.

``summarize`` turns a list of records into one ``PolicySummary`` per (policy, task) with the
metrics of ``arvla_eval.metrics``: success rate (Wilson interval), time to success, smoothness
(RMS jerk, SPARC) of the measured joint trajectories, prefix staleness and step latency.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np

from arvla_eval import metrics

__all__ = ["EpisodeRecord", "PolicySummary", "RecordError", "load_records", "save_records",
           "summarize", "summary_table"]

FORMAT_VERSION = 1
_ARRAYS = ("times", "positions", "commands", "staleness_steps", "step_latency_s")
_SCALARS = ("policy", "task", "seed", "success", "time_to_success", "control_rate_hz", "joint_names")


class RecordError(ValueError):
    """A record is malformed or a records file cannot be read; the message names which."""


@dataclasses.dataclass
class EpisodeRecord:
    """One closed-loop episode of one policy (docs/CONTRACTS.md, "Closed-loop evaluation records")."""

    policy: str                       # "ar" | "chunk" | "chunk_te" | "scripted" | ...
    task: str
    seed: int
    success: bool
    time_to_success: float | None     # sim seconds from episode start (None = no success)
    control_rate_hz: float
    joint_names: list[str]
    times: np.ndarray                 # (T,) sim time [s] of each control tick from episode start
    positions: np.ndarray             # (T, D) measured joint positions at those ticks
    commands: np.ndarray              # (T, D) first commanded point of the trajectory sent at the tick
    staleness_steps: np.ndarray       # (T,) from ExpertStatus (-1 = no prefix)
    step_latency_s: np.ndarray        # (T,) from ExpertStatus
    frames: np.ndarray | None = None  # (F, H, W, 3) uint8 camera frames for a video, or None

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, np.float64)
        self.positions = np.asarray(self.positions, np.float64)
        self.commands = np.asarray(self.commands, np.float64)
        self.staleness_steps = np.asarray(self.staleness_steps, np.int64)
        self.step_latency_s = np.asarray(self.step_latency_s, np.float64)
        if self.frames is not None:
            self.frames = np.asarray(self.frames)
        self.joint_names = [str(n) for n in self.joint_names]
        self.seed, self.success = int(self.seed), bool(self.success)
        self.control_rate_hz = float(self.control_rate_hz)
        if self.time_to_success is not None:
            self.time_to_success = float(self.time_to_success)
        self.validate()

    def validate(self) -> None:
        who = f"record {self.policy}/{self.task}/seed {self.seed}"
        T = self.times.shape[0] if self.times.ndim == 1 else -1
        if T < 0:
            raise RecordError(f"{who}: times must be (T,), got {self.times.shape}")
        D = len(self.joint_names)
        for key in ("positions", "commands"):
            arr = getattr(self, key)
            if arr.shape != (T, D):
                raise RecordError(f"{who}: {key} must be (T={T}, D={D}), got {arr.shape}")
        for key in ("staleness_steps", "step_latency_s"):
            if getattr(self, key).shape != (T,):
                raise RecordError(f"{who}: {key} must be ({T},), got {getattr(self, key).shape}")
        if T > 1 and np.any(np.diff(self.times) <= 0):
            raise RecordError(f"{who}: times must increase strictly")
        if self.control_rate_hz <= 0:
            raise RecordError(f"{who}: control_rate_hz must be > 0, got {self.control_rate_hz}")
        if self.success and self.time_to_success is None:
            raise RecordError(f"{who}: success without time_to_success")
        if self.frames is not None and (self.frames.ndim != 4 or self.frames.shape[-1] != 3
                                        or self.frames.dtype != np.uint8):
            raise RecordError(f"{who}: frames must be (F, H, W, 3) uint8, got "
                              f"{self.frames.shape} {self.frames.dtype}")

    @property
    def dt(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def n_ticks(self) -> int:
        return int(self.times.shape[0])


# ---------------------------------------------------------------------------------------------
# Files


def save_records(path: str | os.PathLike[str], records: Sequence[EpisodeRecord]) -> pathlib.Path:
    """Write ``records`` to ``path`` (``.npz``) atomically; returns the path."""
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise RecordError(f"records files end in .npz, got {path}")
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        rec.validate()
        meta.append({k: getattr(rec, k) for k in _SCALARS} | {"has_frames": rec.frames is not None})
        for key in _ARRAYS:
            arrays[f"{i}/{key}"] = getattr(rec, key)
        if rec.frames is not None:
            arrays[f"{i}/frames"] = rec.frames
    arrays["__meta__"] = np.asarray(json.dumps({"version": FORMAT_VERSION, "records": meta}))
    path.parent.mkdir(parents=True, exist_ok=True)
    from arvla_action_expert.data import atomic_save_npz

    return atomic_save_npz(path, arrays, compressed=True)


def load_records(path: str | os.PathLike[str]) -> list[EpisodeRecord]:
    """Read a file written by ``save_records`` (pickle disabled); RecordError on any problem."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RecordError(f"records file not found: {path}") from None
    except Exception as err:
        raise RecordError(f"cannot read records file {path}: {err}") from err
    if "__meta__" not in data:
        raise RecordError(f"{path}: no __meta__ entry (not a records file)")
    try:
        meta = json.loads(str(data["__meta__"]))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: __meta__ is not JSON: {err}") from err
    if meta.get("version") != FORMAT_VERSION:
        raise RecordError(f"{path}: format version {meta.get('version')!r}, this code reads "
                          f"{FORMAT_VERSION}")
    records = []
    for i, m in enumerate(meta["records"]):
        missing = [f"{i}/{k}" for k in _ARRAYS if f"{i}/{k}" not in data]
        if missing:
            raise RecordError(f"{path}: record {i} lacks arrays {missing}")
        frames = data.get(f"{i}/frames") if m.get("has_frames") else None
        kwargs = {k: m[k] for k in _SCALARS}
        records.append(EpisodeRecord(**kwargs, **{k: data[f"{i}/{k}"] for k in _ARRAYS},
                                     frames=frames))
    return records


# ---------------------------------------------------------------------------------------------
# Summaries


@dataclasses.dataclass(frozen=True)
class PolicySummary:
    """Metrics of the episodes of one policy on one task."""

    policy: str
    task: str
    success: metrics.RateSummary
    time_to_success: metrics.TimeToSuccess
    rms_jerk: float                   # mean over episodes, of the measured joint trajectory
    sparc: float                      # mean over episodes (closer to 0 = smoother); NaN if none moved
    staleness: metrics.StalenessSummary | None   # over ticks that had a prefix
    step_latency: metrics.LatencySummary | None  # over ticks that ran the model (latency > 0)


def _smoothness(rec: EpisodeRecord) -> tuple[float, float]:
    if rec.n_ticks < 4:
        return float("nan"), float("nan")
    m = metrics.trajectory_metrics(rec.positions, rec.dt)
    return m.rms_jerk, m.sparc


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(records: Sequence[EpisodeRecord]) -> list[PolicySummary]:
    """One summary per (policy, task), in order of first appearance."""
    groups: dict[tuple[str, str], list[EpisodeRecord]] = {}
    for rec in records:
        groups.setdefault((rec.policy, rec.task), []).append(rec)
    out = []
    for (policy, task), recs in groups.items():
        outcomes = [r.success for r in recs]
        smooth = [_smoothness(r) for r in recs]
        stale = np.concatenate([r.staleness_steps[r.staleness_steps >= 0] for r in recs])
        lat = np.concatenate([r.step_latency_s[r.step_latency_s > 0] for r in recs])
        out.append(PolicySummary(
            policy=policy, task=task,
            success=metrics.success_rate(outcomes),
            time_to_success=metrics.time_to_success(outcomes, [r.time_to_success for r in recs]),
            rms_jerk=_nanmean(s[0] for s in smooth), sparc=_nanmean(s[1] for s in smooth),
            staleness=metrics.staleness_summary(stale.astype(np.int64)) if stale.size else None,
            step_latency=metrics.latency_summary(lat) if lat.size else None))
    return out


def summary_table(summaries: Sequence[PolicySummary]) -> str:
    """A Markdown table of ``summaries`` (one row per policy and task)."""
    rows = ["| policy | task | success | 95% CI | time to success (s) | RMS jerk (rad/s³) | SPARC "
            "| staleness p50/p95 (steps) | step latency p50/p95 (ms) |",
            "|---|---|---|---|---|---|---|---|---|"]

    def f(x: float, fmt: str = ".2f") -> str:
        return "–" if not math.isfinite(x) else format(x, fmt)

    for s in summaries:
        st = (f"{s.staleness.p50:.0f}/{s.staleness.p95:.0f}" if s.staleness else "–")
        lat = (f"{s.step_latency.p50 * 1e3:.2f}/{s.step_latency.p95 * 1e3:.2f}"
               if s.step_latency else "–")
        rows.append(f"| {s.policy} | {s.task} | {s.success.successes}/{s.success.n} "
                    f"({s.success.rate:.0%}) | {s.success.ci_low:.2f}–{s.success.ci_high:.2f} "
                    f"| {f(s.time_to_success.mean_s)} | {f(s.rms_jerk, '.1f')} | {f(s.sparc)} "
                    f"| {st} | {lat} |")
    return "\n".join(rows)

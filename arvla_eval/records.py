"""Closed-loop evaluation records: one ``EpisodeRecord`` per episode of one policy (ROS-free).

``rollout.run_episodes`` produces them from the real ROS graph; reports, plots and the demo
consume them. They are stored in ONE ``.npz`` file: the arrays of record ``i`` under
``"<i>/<field>"`` and every scalar / list field of all records as JSON text under
``"__meta__"`` -- readable with ``allow_pickle=False`` (no pickle anywhere), written atomically
(temp file in the same directory, fsync, ``os.replace``) so a crash never leaves half a file.

``summarize`` turns a list of records into one ``PolicySummary`` per (policy, task) with the
metrics of ``arvla_eval.metrics``: success rate (Wilson interval), time to success, smoothness
(RMS jerk, SPARC) of the measured joint trajectories, RMS jerk of the commanded targets, prefix
staleness and step latency.

Smoothness is measured on samples at their true stamps (``measured_metrics``): the raw
``/joint_states`` samples (``joint_times``, ``joint_positions``) resampled onto a grid of one
control period, so jitter in when a sample was taken or when a tick ran does not read as jerk;
the commands likewise at the times they target (``command_jerk``, ``command_times``). Records
written before these were kept fall back to the tick samples (``positions``) with a constant
dt, the old reading, which timing jitter inflates (test/eval/test_stamped_jerk.py), and to
the tick + one period for the commands.
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

__all__ = ["EpisodeRecord", "PolicySummary", "RecordError", "command_jerk", "load_records",
           "measured_metrics", "save_records", "summarize", "summary_table"]

FORMAT_VERSION = 1
_ARRAYS = ("times", "positions", "commands", "staleness_steps", "step_latency_s")
_OPTIONAL = ("joint_times", "joint_positions", "command_times")  # None / absent in older files
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
    joint_times: np.ndarray | None = None      # (S,) stamp [s] from episode start of each raw
    #                                            /joint_states sample of the episode, or None
    joint_positions: np.ndarray | None = None  # (S, D) those samples' positions
    command_times: np.ndarray | None = None    # (T,) time [s] from episode start that each
    #                                            command targets (stamp + time_from_start), or None

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, np.float64)
        self.positions = np.asarray(self.positions, np.float64)
        self.commands = np.asarray(self.commands, np.float64)
        self.staleness_steps = np.asarray(self.staleness_steps, np.int64)
        self.step_latency_s = np.asarray(self.step_latency_s, np.float64)
        if self.frames is not None:
            self.frames = np.asarray(self.frames)
        if self.joint_times is not None:
            self.joint_times = np.asarray(self.joint_times, np.float64)
        if self.joint_positions is not None:
            self.joint_positions = np.asarray(self.joint_positions, np.float64)
        if self.command_times is not None:
            self.command_times = np.asarray(self.command_times, np.float64)
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
        if (self.joint_times is None) != (self.joint_positions is None):
            raise RecordError(f"{who}: joint_times and joint_positions come together (one is None)")
        if self.joint_times is not None and self.joint_positions is not None:
            S = self.joint_times.shape[0] if self.joint_times.ndim == 1 else -1
            if S < 0:
                raise RecordError(f"{who}: joint_times must be (S,), got {self.joint_times.shape}")
            if self.joint_positions.shape != (S, D):
                raise RecordError(f"{who}: joint_positions must be (S={S}, D={D}), got "
                                  f"{self.joint_positions.shape}")
            if not (np.all(np.isfinite(self.joint_times))
                    and np.all(np.isfinite(self.joint_positions))):
                raise RecordError(f"{who}: joint_times / joint_positions have non-finite values")
        if self.command_times is not None:
            if self.command_times.shape != (T,):
                raise RecordError(f"{who}: command_times must be ({T},), got {self.command_times.shape}")
            if not np.all(np.isfinite(self.command_times)):
                raise RecordError(f"{who}: command_times has non-finite values")

    @property
    def has_joint_samples(self) -> bool:
        """Whether the raw /joint_states samples were kept (records from before: no)."""
        return self.joint_times is not None

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
        optional = [k for k in _OPTIONAL if getattr(rec, k) is not None]
        meta.append({k: getattr(rec, k) for k in _SCALARS}
                    | {"has_frames": rec.frames is not None, "optional_arrays": optional})
        for key in (*_ARRAYS, *optional):
            arrays[f"{i}/{key}"] = getattr(rec, key)
        if rec.frames is not None:
            arrays[f"{i}/frames"] = rec.frames
    arrays["__meta__"] = np.asarray(json.dumps({"version": FORMAT_VERSION, "records": meta}))
    path.parent.mkdir(parents=True, exist_ok=True)
    from arvla_base.fileio import atomic_save_npz

    return atomic_save_npz(path, arrays, compressed=True)


def load_records(path: str | os.PathLike[str]) -> list[EpisodeRecord]:
    """Read a file written by ``save_records`` (pickle disabled); RecordError on any problem."""
    from arvla_base.fileio import read_npz

    path = pathlib.Path(path)
    data = read_npz(path, RecordError, "records file")
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
        optional = [k for k in m.get("optional_arrays", []) if k in _OPTIONAL]  # older: none
        missing = [f"{i}/{k}" for k in (*_ARRAYS, *optional) if f"{i}/{k}" not in data]
        if missing:
            raise RecordError(f"{path}: record {i} lacks arrays {missing}")
        frames = data.get(f"{i}/frames") if m.get("has_frames") else None
        kwargs = {k: m[k] for k in _SCALARS}
        records.append(EpisodeRecord(**kwargs, **{k: data[f"{i}/{k}"] for k in _ARRAYS},
                                     **{k: data[f"{i}/{k}"] for k in optional}, frames=frames))
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
    rms_jerk_ci95: float              # half-width of its 95 % interval (NaN below 2 episodes)
    sparc: float                      # mean over episodes (closer to 0 = smoother); NaN if none moved
    command_jerk: float               # mean over episodes, RMS jerk of the commanded targets
    staleness: metrics.StalenessSummary | None   # over ticks that had a prefix
    step_latency: metrics.LatencySummary | None  # over ticks that ran the model (latency > 0)


def measured_metrics(rec: EpisodeRecord) -> metrics.TrajectoryMetrics | None:
    """Smoothness and peaks of the measured joint trajectory on a grid of one control period.

    From the raw /joint_states samples at their stamps when the record has them
    (``metrics.trajectory_metrics_stamped``), else -- older records -- from the tick samples
    with a constant dt. None when the episode is too short (or all gaps) for a jerk.
    """
    try:
        if rec.joint_times is not None:
            return metrics.trajectory_metrics_stamped(rec.joint_times, rec.joint_positions, rec.dt)
        if rec.n_ticks < 4:
            return None
        return metrics.trajectory_metrics(rec.positions, rec.dt)
    except ValueError:  # fewer than 4 gap-free grid points
        return None


def command_jerk(rec: EpisodeRecord) -> float:
    """RMS jerk of the commanded targets: each tick's first commanded point at the time it
    targets (``command_times``; older records: the tick's stamp + one period), resampled onto
    the control-period grid like the joint samples, so late or early ticks do not read as
    jerk. A command held over ticks (the same target time) counts once. NaN when too short."""
    stamps = rec.command_times if rec.command_times is not None else rec.times + rec.dt
    try:
        return metrics.rms_jerk_stamped(stamps, rec.commands, rec.dt)
    except ValueError:  # fewer than 4 ticks, or ticks too far apart
        return float("nan")


def _smoothness(rec: EpisodeRecord) -> tuple[float, float, float]:
    m = measured_metrics(rec)
    nan = float("nan")
    return (m.rms_jerk if m else nan), (m.sparc if m else nan), command_jerk(rec)


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
            rms_jerk=_nanmean(s[0] for s in smooth),
            rms_jerk_ci95=metrics.mean_ci95(s[0] for s in smooth)[1],
            sparc=_nanmean(s[1] for s in smooth),
            command_jerk=_nanmean(s[2] for s in smooth),
            staleness=metrics.staleness_summary(stale.astype(np.int64)) if stale.size else None,
            step_latency=metrics.latency_summary(lat) if lat.size else None))
    return out


def summary_table(summaries: Sequence[PolicySummary]) -> str:
    """A Markdown table of ``summaries`` (one row per policy and task)."""
    rows = ["| policy | task | success | 95% CI | time to success (s) | RMS jerk ± 95% CI (rad/s³) | SPARC "
            "| RMS jerk of commands (rad/s³) | staleness p50/p95 (steps) "
            "| step latency p50/p95 (ms) |",
            "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x: float, fmt: str = ".2f") -> str:
        return "–" if not math.isfinite(x) else format(x, fmt)

    for s in summaries:
        st = (f"{s.staleness.p50:.0f}/{s.staleness.p95:.0f}" if s.staleness else "–")
        lat = (f"{s.step_latency.p50 * 1e3:.2f}/{s.step_latency.p95 * 1e3:.2f}"
               if s.step_latency else "–")
        rows.append(f"| {s.policy} | {s.task} | {s.success.successes}/{s.success.n} "
                    f"({s.success.rate:.0%}) | {s.success.ci_low:.2f}–{s.success.ci_high:.2f} "
                    f"| {f(s.time_to_success.mean_s)} | {f(s.rms_jerk, '.1f')} ± {f(s.rms_jerk_ci95, '.1f')} "
                    f"| {f(s.sparc)} "
                    f"| {f(s.command_jerk, '.1f')} | {st} | {lat} |")
    return "\n".join(rows)

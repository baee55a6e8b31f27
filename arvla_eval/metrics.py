"""Evaluation metrics: trajectory smoothness, success, latency and staleness summaries.

Pure numpy, no ROS, so the same numbers come out of closed-loop sim runs, offline bag replays
and unit tests. Trajectories are ``(T, D)`` arrays of joint positions sampled every ``dt``
seconds (one row per control step); a 1-D array is read as ``(T, 1)``.

Smoothness is what the paper claims an autoregressive expert improves over chunked heads, so
two complementary measures are given:

- RMS jerk (third finite difference): sensitive to high-frequency chatter and to the
  discontinuities a chunk boundary produces, but it grows with movement speed and amplitude.
- SPARC, the spectral arc length of the speed profile (Balasubramanian, Melendez-Calderon,
  Roby-Brami, Burdet, "On the analysis of movement smoothness", J. NeuroEng. Rehabil. 2015):
  dimensionless and independent of amplitude and duration; 0 would be perfectly smooth,
  bell-shaped reaching movements score about -1.4 to -1.6, jerky ones are more negative.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "LatencySummary",
    "RateSummary",
    "StalenessSummary",
    "TimeToSuccess",
    "TrajectoryMetrics",
    "derivative",
    "jerk",
    "latency_summary",
    "peak_acceleration",
    "peak_velocity",
    "rms_jerk",
    "sparc",
    "speed_profile",
    "staleness_summary",
    "success_rate",
    "time_to_success",
    "trajectory_metrics",
]

# SPARC parameters recommended in the 2015 paper.
SPARC_AMPLITUDE_THRESHOLD = 0.05
SPARC_MAX_CUTOFF_HZ = 10.0
SPARC_ZERO_PADDING = 4  # FFT length = 2 ** (ceil(log2(T)) + padding)


def _as_trajectory(traj: np.ndarray | Sequence[float], *, min_len: int, what: str) -> np.ndarray:
    x = np.asarray(traj, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a (T, D) trajectory, got shape {x.shape}")
    if x.shape[0] < min_len:
        raise ValueError(f"{what}: needs at least {min_len} samples, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"{what}: trajectory has a non-finite value at step {bad}")
    return x


def _check_dt(dt: float) -> float:
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 seconds, got {dt!r}")
    return float(dt)


def derivative(traj: np.ndarray, dt: float, order: int) -> np.ndarray:
    """``order``-th backward finite difference divided by ``dt**order``: shape (T - order, D).

    Plain differences, no smoothing: smoothing would hide exactly the chatter we measure.
    A polynomial of degree ``order`` has an exactly constant ``order``-th difference.
    """
    if order < 1:
        raise ValueError(f"derivative order must be >= 1, got {order}")
    x = _as_trajectory(traj, min_len=order + 1, what=f"derivative of order {order}")
    return np.diff(x, n=order, axis=0) / _check_dt(dt) ** order


def jerk(traj: np.ndarray, dt: float) -> np.ndarray:
    """Third derivative by finite differences, (T - 3, D) in units/s^3."""
    return derivative(traj, dt, 3)


def rms_jerk(traj: np.ndarray, dt: float) -> float:
    """Root mean square over time of the jerk vector's Euclidean norm, units/s^3."""
    j = jerk(traj, dt)
    return float(np.sqrt(np.mean(np.sum(j * j, axis=1))))


def peak_velocity(traj: np.ndarray, dt: float) -> float:
    """Largest norm of the finite-difference velocity vector, units/s."""
    return float(np.max(np.linalg.norm(derivative(traj, dt, 1), axis=1)))


def peak_acceleration(traj: np.ndarray, dt: float) -> float:
    """Largest norm of the finite-difference acceleration vector, units/s^2."""
    return float(np.max(np.linalg.norm(derivative(traj, dt, 2), axis=1)))


def speed_profile(traj: np.ndarray, dt: float) -> np.ndarray:
    """Speed (norm of the velocity vector) at each of the T - 1 intervals, units/s."""
    return np.linalg.norm(derivative(traj, dt, 1), axis=1)


def sparc(speed: np.ndarray | Sequence[float], fs: float, *,
          amplitude_threshold: float = SPARC_AMPLITUDE_THRESHOLD,
          max_cutoff_hz: float = SPARC_MAX_CUTOFF_HZ,
          padding: int = SPARC_ZERO_PADDING) -> float:
    """Spectral arc length of a speed profile sampled at ``fs`` Hz (Balasubramanian et al. 2015).

    Definition: with ``V(w)`` the Fourier magnitude of the speed profile and
    ``Vh(w) = V(w) / V(0)`` its normalised spectrum,

        SPARC = -integral_0^wc sqrt( (1/wc)^2 + (dVh/dw)^2 ) dw

    i.e. minus the arc length of ``Vh`` plotted against the normalised frequency ``w / wc``. The
    cutoff is adaptive: ``wc = min(wc_max, min{w : Vh(r) < threshold for all r > w})`` -- the
    last frequency below ``wc_max`` where the spectrum still reaches the amplitude threshold --
    so a smooth movement's spectrum is measured over its own bandwidth and a jerky movement's
    extra spectral bumps lengthen the arc. The spectrum is zero-padded ``padding`` powers of two
    beyond the signal length so that its shape (not the FFT bin spacing) decides the result.
    """
    v = np.asarray(speed, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"sparc: expected a 1-D speed profile with >= 2 samples, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("sparc: speed profile has non-finite values")
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sparc: fs must be > 0 Hz, got {fs!r}")
    if not 0 < amplitude_threshold < 1:
        raise ValueError(f"sparc: amplitude_threshold must be in (0, 1), got {amplitude_threshold}")
    if max_cutoff_hz <= 0:
        raise ValueError(f"sparc: max_cutoff_hz must be > 0, got {max_cutoff_hz}")
    nfft = 2 ** (int(math.ceil(math.log2(v.size))) + int(padding))
    freqs = np.arange(nfft) * (fs / nfft)
    spectrum = np.abs(np.fft.fft(v, nfft))
    peak = spectrum[0]
    if peak <= 0:
        raise ValueError("sparc: speed profile has zero mean (no movement); SPARC is undefined")
    spectrum = spectrum / peak
    # Keep frequencies up to the fixed cap (and Nyquist), then cut at the last bin that still
    # reaches the amplitude threshold.
    in_band = freqs <= min(max_cutoff_hz, fs / 2)
    f_sel, m_sel = freqs[in_band], spectrum[in_band]
    above = np.nonzero(m_sel >= amplitude_threshold)[0]
    last = int(above[-1]) if above.size else 0
    f_sel, m_sel = f_sel[: last + 1], m_sel[: last + 1]
    if f_sel.size < 2:
        return 0.0
    f_norm = f_sel / f_sel[-1]
    return float(-np.sum(np.sqrt(np.diff(f_norm) ** 2 + np.diff(m_sel) ** 2)))


@dataclasses.dataclass(frozen=True)
class TrajectoryMetrics:
    """Smoothness and magnitude of one trajectory (units: those of the trajectory, seconds)."""

    duration_s: float
    rms_jerk: float
    sparc: float
    peak_velocity: float
    peak_acceleration: float
    path_length: float  # sum of step displacement norms


def trajectory_metrics(traj: np.ndarray, dt: float) -> TrajectoryMetrics:
    """All smoothness metrics of a (T, D) trajectory sampled every ``dt`` seconds (T >= 4)."""
    x = _as_trajectory(traj, min_len=4, what="trajectory_metrics")
    dt = _check_dt(dt)
    speed = speed_profile(x, dt)
    try:
        s = sparc(speed, 1.0 / dt)
    except ValueError:
        s = float("nan")  # motionless trajectory: smoothness of no movement is undefined
    return TrajectoryMetrics(
        duration_s=(x.shape[0] - 1) * dt,
        rms_jerk=rms_jerk(x, dt),
        sparc=s,
        peak_velocity=float(speed.max()),
        peak_acceleration=peak_acceleration(x, dt),
        path_length=float(np.sum(speed) * dt),
    )


# ---------------------------------------------------------------------------------------------
# Outcomes over many episodes


@dataclasses.dataclass(frozen=True)
class RateSummary:
    """Success rate with a 95 % Wilson score interval (sensible at small n and at 0 or 1)."""

    successes: int
    n: int
    rate: float
    ci_low: float
    ci_high: float


def success_rate(outcomes: Iterable[bool], *, z: float = 1.959963984540054) -> RateSummary:
    """Fraction of successful episodes and its Wilson interval (z = 1.96 -> 95 %)."""
    values = [bool(o) for o in outcomes]
    n = len(values)
    if n == 0:
        raise ValueError("success_rate: no episodes given")
    k = sum(values)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return RateSummary(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass(frozen=True)
class TimeToSuccess:
    """Time to success over the successful episodes only (failures have no time)."""

    n_success: int
    n: int
    mean_s: float
    median_s: float
    p95_s: float


def time_to_success(outcomes: Sequence[bool], times_s: Sequence[float | None]) -> TimeToSuccess:
    """Aggregate time-to-success; ``times_s[i]`` is ignored where ``outcomes[i]`` is False.

    Statistics are NaN when no episode succeeded (there is no time to report, and 0 would read
    as "instant success").
    """
    if len(outcomes) != len(times_s):
        raise ValueError(f"time_to_success: {len(outcomes)} outcomes but {len(times_s)} times")
    if not outcomes:
        raise ValueError("time_to_success: no episodes given")
    times = []
    for i, (ok, t) in enumerate(zip(outcomes, times_s)):
        if not ok:
            continue
        if t is None or not math.isfinite(t) or t < 0:
            raise ValueError(f"time_to_success: episode {i} succeeded but has time {t!r}")
        times.append(float(t))
    if not times:
        nan = float("nan")
        return TimeToSuccess(0, len(outcomes), nan, nan, nan)
    arr = np.asarray(times)
    return TimeToSuccess(len(times), len(outcomes), float(arr.mean()), float(np.median(arr)),
                         float(np.percentile(arr, 95)))


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    """Distribution of a latency (or any non-negative duration), seconds."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


def latency_summary(values_s: Iterable[float]) -> LatencySummary:
    """Mean / p50 / p95 / p99 / max of latencies; tail percentiles are what a control loop feels."""
    arr = np.asarray(list(values_s), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("latency_summary: no samples given")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"latency_summary: {int(np.sum(~np.isfinite(arr)))} non-finite samples")
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return LatencySummary(int(arr.size), float(arr.mean()), float(p50), float(p95), float(p99),
                          float(arr.max()))


@dataclasses.dataclass(frozen=True)
class StalenessSummary:
    """Distribution of prefix staleness in control steps (see CONTRACTS.md)."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: int
    negative: int  # ticks whose prefix claimed to come from the future
    histogram: dict[int, int]  # staleness (steps) -> number of ticks


def staleness_summary(steps: Iterable[int]) -> StalenessSummary:
    """Summary of per-tick staleness values (integers, steps). Ticks without a prefix (-1 in
    ExpertStatus) must be filtered out by the caller: they are not a staleness."""
    arr = np.asarray(list(steps))
    if arr.size == 0:
        raise ValueError("staleness_summary: no samples given")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"staleness_summary: staleness is counted in whole steps, got dtype {arr.dtype}")
    values, counts = np.unique(arr, return_counts=True)
    p50, p95, p99 = np.percentile(arr.astype(np.float64), [50, 95, 99])
    return StalenessSummary(int(arr.size), float(arr.mean()), float(p50), float(p95), float(p99),
                            int(arr.max()), int(np.sum(arr < 0)),
                            {int(v): int(c) for v, c in zip(values, counts)})

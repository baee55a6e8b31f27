"""Evaluation metrics: trajectory smoothness, success, latency and staleness summaries.

Pure numpy, no ROS, so the same numbers come out of closed-loop sim runs, offline bag replays
and unit tests. Trajectories are ``(T, D)`` arrays of joint positions sampled every ``dt``
seconds (one row per control step); a 1-D array is read as ``(T, 1)``.

Samples that carry their own timestamps (``/joint_states`` of a real robot, a bag, a sim whose
control ticks jitter) must not be differentiated with an assumed constant ``dt``: a 2 ms error
in when a sample was taken is a position error of speed x 2 ms, which the third difference
divides by ``dt**3``. ``resample_uniform`` puts them onto a uniform grid first (local cubic
interpolation at their true stamps), and ``rms_jerk_stamped`` / ``trajectory_metrics_stamped``
measure on that grid exactly what ``rms_jerk`` / ``trajectory_metrics`` measure on uniform
samples (test/eval/test_stamped_jerk.py: a smooth reach sampled with 2-5 ms jitter reads its
analytic jerk within 10 %, where the newest sample before each tick at a constant dt reads it
13-40x too high).

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
    "UniformSeries",
    "derivative",
    "jerk",
    "latency_summary",
    "peak_acceleration",
    "peak_velocity",
    "resample_uniform",
    "rms_jerk",
    "rms_jerk_stamped",
    "sparc",
    "speed_profile",
    "staleness_summary",
    "stamped_jerk",
    "success_rate",
    "time_to_success",
    "trajectory_metrics",
    "trajectory_metrics_stamped",
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


def _sparc_or_nan(speed: np.ndarray, dt: float) -> float:
    """SPARC of a speed profile sampled every ``dt``; NaN for a motionless one (the smoothness
    of no movement is undefined)."""
    try:
        return sparc(speed, 1.0 / dt)
    except ValueError:
        return float("nan")


def trajectory_metrics(traj: np.ndarray, dt: float) -> TrajectoryMetrics:
    """All smoothness metrics of a (T, D) trajectory sampled every ``dt`` seconds (T >= 4)."""
    x = _as_trajectory(traj, min_len=4, what="trajectory_metrics")
    dt = _check_dt(dt)
    speed = speed_profile(x, dt)
    s = _sparc_or_nan(speed, dt)
    return TrajectoryMetrics(
        duration_s=(x.shape[0] - 1) * dt,
        rms_jerk=rms_jerk(x, dt),
        sparc=s,
        peak_velocity=float(speed.max()),
        peak_acceleration=peak_acceleration(x, dt),
        path_length=float(np.sum(speed) * dt),
    )


# ---------------------------------------------------------------------------------------------
# Samples at their own timestamps

# By default a gap between consecutive samples longer than this many grid periods is not
# interpolated across: grid points inside it are marked invalid and no derivative spans them.
MAX_GAP_PERIODS = 2.5


@dataclasses.dataclass(frozen=True)
class UniformSeries:
    """Stamped samples moved onto a uniform grid (``resample_uniform``)."""

    times: np.ndarray      # (M,) seconds: the first stamp + k * dt
    positions: np.ndarray  # (M, D)
    valid: np.ndarray      # (M,) bool; False inside a gap (positions there bridged linearly)
    dt: float

    def runs(self, n: int) -> np.ndarray:
        """(M - n + 1,) bool: True where grid points i .. i + n - 1 are all valid, i.e. where
        an ``n - 1``-th difference starting at point i measures samples, not a gap."""
        if self.valid.size < n:
            return np.zeros(0, bool)
        return np.convolve(self.valid.astype(np.int64), np.ones(n, np.int64), "valid") == n


def _stamped_samples(times_s: np.ndarray | Sequence[float], positions: np.ndarray,
                     what: str) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and (N, D) positions sorted by stamp, exact duplicate stamps dropped (the first
    sample at a stamp is kept: a republished sample carries nothing new)."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"{what}: stamps must be 1-D, got shape {t.shape}")
    x = _as_trajectory(positions, min_len=0, what=what)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"{what}: {t.shape[0]} stamps for {x.shape[0]} samples")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{what}: stamp {int(np.argwhere(~np.isfinite(t))[0, 0])} is not finite")
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    keep = np.concatenate([[True], np.diff(t) > 0])[: t.size]
    t, x = t[keep], x[keep]
    if t.size < 2:
        raise ValueError(f"{what}: needs samples at >= 2 distinct stamps, got {t.size}")
    return t, x


def _local_cubic(ts: np.ndarray, xs: np.ndarray, tq: np.ndarray) -> np.ndarray:
    """Values at ``tq`` of the cubic through the 4 samples around each query (2 on either side;
    at the ends the 4 nearest; the polynomial through all samples when there are fewer than 4).

    Exact for cubics, error O(h^4) times the 4th derivative for smooth motion, whatever the
    spacing. Local, so a glitch or a kink disturbs two samples either side and nothing further
    (a global spline rings). ``ts`` increasing (n,), ``xs`` (n, D), ``tq`` in [ts[0], ts[-1]].
    """
    n = ts.size
    k = min(4, n)
    i = np.clip(np.searchsorted(ts, tq, side="right") - 1, 0, n - 2)  # interval of each query
    first = np.clip(i - (k // 2 - 1), 0, n - k)
    idx = first[:, None] + np.arange(k)[None, :]                        # (M, k) stencil
    tt = ts[idx]
    out = np.zeros((tq.size, xs.shape[1]))
    for a in range(k):  # Lagrange basis polynomial of stencil point a, at every query at once
        w = np.ones(tq.size)
        for b in range(k):
            if b != a:
                w *= (tq - tt[:, b]) / (tt[:, a] - tt[:, b])
        out += w[:, None] * xs[idx[:, a]]
    return out


def resample_uniform(times_s: np.ndarray | Sequence[float], positions: np.ndarray, dt: float, *,
                     max_gap_s: float | None = None) -> UniformSeries:
    """Samples taken at irregular ``times_s`` (seconds) -> a grid every ``dt`` from the first stamp.

    Samples are sorted by stamp and exact duplicate stamps dropped. Each grid point gets the
    local cubic through the samples around it AT THEIR TRUE STAMPS, so timing jitter moves
    where the motion is sampled, not what it reads. Where consecutive stamps are more than
    ``max_gap_s`` apart (default ``MAX_GAP_PERIODS * dt``) the motion is unknown: grid points
    inside the gap are bridged linearly and marked invalid; no cubic reaches across a gap.
    """
    dt = _check_dt(dt)
    t, x = _stamped_samples(times_s, positions, "resample_uniform")
    gap = MAX_GAP_PERIODS * dt if max_gap_s is None else float(max_gap_s)
    if not (math.isfinite(gap) and gap > 0):
        raise ValueError(f"resample_uniform: max_gap_s must be a finite number > 0, got {max_gap_s!r}")
    origin = t[0]
    rel = t - origin  # small numbers: wall-clock stamps (~1.7e9 s) would eat the precision
    m = int(math.floor(rel[-1] / dt * (1 + 1e-12))) + 1
    grid = np.minimum(np.arange(m) * dt, rel[-1])
    out = np.stack([np.interp(grid, rel, x[:, d]) for d in range(x.shape[1])], axis=1)
    valid = np.zeros(m, bool)
    cuts = np.flatnonzero(np.diff(rel) > gap) + 1
    for s, e in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [rel.size]])):
        if e - s < 2:
            continue  # one sample between two gaps: no motion to interpolate
        sel = (grid >= rel[s]) & (grid <= rel[e - 1])
        if sel.any():
            out[sel] = _local_cubic(rel[s:e], x[s:e], grid[sel])
            valid[sel] = True
    return UniformSeries(grid + origin, out, valid, dt)


def _needs_grid_points(u: UniformSeries, n: int, what: str) -> None:
    if not u.runs(n).any():
        raise ValueError(f"{what}: needs at least {n} consecutive grid points {u.dt:g} s apart "
                         f"without a gap; the samples span {u.times[-1] - u.times[0]:.3g} s "
                         f"({int(u.valid.sum())} of {u.valid.size} grid points valid)")


def stamped_jerk(times_s: np.ndarray | Sequence[float], positions: np.ndarray, dt: float, *,
                 max_gap_s: float | None = None) -> np.ndarray:
    """Jerk of stamped samples: third differences on the ``resample_uniform`` grid, (K, D) in
    units/s^3; differences that would span a gap are left out."""
    u = resample_uniform(times_s, positions, dt, max_gap_s=max_gap_s)
    _needs_grid_points(u, 4, "stamped_jerk")
    return (np.diff(u.positions, n=3, axis=0) / u.dt**3)[u.runs(4)]


def rms_jerk_stamped(times_s: np.ndarray | Sequence[float], positions: np.ndarray, dt: float, *,
                     max_gap_s: float | None = None) -> float:
    """``rms_jerk`` of samples at their own stamps, measured on a uniform ``dt`` grid.

    On uniform stamps that fall on the grid it equals ``rms_jerk(positions, dt)``. ``dt`` sets
    the bandwidth of the measure as it does for ``rms_jerk``: a third difference over ``dt``
    reads a sinusoid of frequency f at ``sinc(f dt)**3`` of its jerk amplitude (dt = 0.05 s:
    99 % at 1 Hz, 82 % at 4 Hz), which also keeps sensor noise from dominating the number.
    """
    j = stamped_jerk(times_s, positions, dt, max_gap_s=max_gap_s)
    return float(np.sqrt(np.mean(np.sum(j * j, axis=1))))


def trajectory_metrics_stamped(times_s: np.ndarray | Sequence[float], positions: np.ndarray,
                               dt: float, *, max_gap_s: float | None = None) -> TrajectoryMetrics:
    """``trajectory_metrics`` of samples at their own stamps, on the ``resample_uniform`` grid.

    Jerk, peak velocity and peak acceleration use only differences within gap-free stretches;
    SPARC and the path length use the whole grid (a gap contributes its straight bridge).
    """
    u = resample_uniform(times_s, positions, dt, max_gap_s=max_gap_s)
    _needs_grid_points(u, 4, "trajectory_metrics_stamped")
    x, dt = u.positions, u.dt
    speed = np.linalg.norm(np.diff(x, axis=0), axis=1) / dt
    acc = np.linalg.norm(np.diff(x, n=2, axis=0), axis=1) / dt**2
    j = (np.diff(x, n=3, axis=0) / dt**3)[u.runs(4)]
    s = _sparc_or_nan(speed, dt)
    return TrajectoryMetrics(
        duration_s=(x.shape[0] - 1) * dt,
        rms_jerk=float(np.sqrt(np.mean(np.sum(j * j, axis=1)))),
        sparc=s,
        peak_velocity=float(speed[u.runs(2)].max()),
        peak_acceleration=float(acc[u.runs(3)].max()),
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


def mean_ci95(values: Iterable[float]) -> tuple[float, float]:
    """Mean of the finite ``values`` and the half-width of its 95 % interval (normal
    approximation, 1.96 x the standard error; NaN half-width for fewer than 2 values)."""
    vals = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if vals.size == 0:
        return math.nan, math.nan
    if vals.size < 2:
        return float(vals.mean()), math.nan
    return float(vals.mean()), float(1.959963984540054 * vals.std(ddof=1) / math.sqrt(vals.size))


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

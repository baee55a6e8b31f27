"""Metrics against analytic cases: polynomials, Gaussian and minimum-jerk speed profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla_eval import metrics as M


def min_jerk(T: float, fs: float, amplitude: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(0.0, T + 0.5 / fs, 1.0 / fs)
    tau = t / T
    return t, amplitude * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)


def gaussian_sparc_reference(threshold: float = 0.05) -> float:
    """SPARC of a Gaussian speed profile, from the definition in closed form.

    v(t) = exp(-t^2 / 2 s^2) has |V(w)| / V(0) = exp(-s^2 w^2 / 2); the adaptive cutoff is where
    that reaches the threshold, so in normalised frequency x = w / wc the spectrum is
    exp(-a x^2), a = ln(1 / threshold), independent of s. SPARC is minus its arc length on [0, 1].
    """
    a = math.log(1.0 / threshold)
    x = np.linspace(0.0, 1.0, 400_001)
    dy = -2 * a * x * np.exp(-a * x * x)
    return -float(np.trapezoid(np.sqrt(1 + dy * dy), x))


def test_jerk_of_cubic_is_constant_and_exact():
    dt = 0.02
    t = np.arange(50) * dt
    a, b = 0.7, -1.3  # x = a t^3 + b t^2 on joint 0, 2 a t^3 on joint 1
    traj = np.stack([a * t**3 + b * t**2, 2 * a * t**3], axis=1)
    j = M.jerk(traj, dt)
    assert j.shape == (47, 2)
    np.testing.assert_allclose(j[:, 0], 6 * a, rtol=1e-6)
    np.testing.assert_allclose(j[:, 1], 12 * a, rtol=1e-6)
    assert M.rms_jerk(traj, dt) == pytest.approx(math.hypot(6 * a, 12 * a), rel=1e-6)


def test_rms_jerk_of_min_jerk_matches_closed_form():
    # jerk(t) = 60 A / T^3 (1 - 6 tau + 6 tau^2); its mean square over [0, 1] is 0.2 (60 A/T^3)^2
    T, fs, A = 2.0, 500.0, 0.8
    _, x = min_jerk(T, fs, A)
    expected = 60 * A / T**3 * math.sqrt(0.2)
    assert M.rms_jerk(x, 1 / fs) == pytest.approx(expected, rel=0.02)


def test_peaks_of_min_jerk_match_closed_form():
    # peak speed 1.875 A / T at tau = 1/2; peak acceleration 10 / sqrt(3) A / T^2
    T, fs, A = 1.5, 1000.0, 0.5
    _, x = min_jerk(T, fs, A)
    assert M.peak_velocity(x, 1 / fs) == pytest.approx(1.875 * A / T, rel=1e-3)
    assert M.peak_acceleration(x, 1 / fs) == pytest.approx(10 / math.sqrt(3) * A / T**2, rel=1e-2)


def test_sparc_of_gaussian_speed_matches_its_definition():
    fs = 400.0
    t = np.arange(-2.0, 2.0, 1 / fs)
    ref = gaussian_sparc_reference()
    for sigma in (0.15, 0.3):  # SPARC is independent of duration
        v = np.exp(-t * t / (2 * sigma * sigma))
        assert M.sparc(v, fs) == pytest.approx(ref, abs=0.01)
    assert M.sparc(3.7 * v, fs) == pytest.approx(M.sparc(v, fs), abs=1e-9)  # amplitude-free


def test_sparc_and_jerk_rank_smooth_above_jerky():
    fs = 100.0
    t, x = min_jerk(1.0, fs)
    rng = np.random.default_rng(0)
    traj = np.stack([x, 0.5 * x], axis=1)
    tremor = traj + 0.01 * np.sin(2 * np.pi * 6 * t)[:, None]
    stepped = traj.copy()
    # A chunk-boundary style jump. (A jump much smaller than the movement stays below SPARC's
    # 5 % spectral threshold by design; RMS jerk still sees it.)
    stepped[len(t) // 2:] += 0.1
    noisy = traj + rng.normal(0, 0.002, traj.shape)
    smooth = M.trajectory_metrics(traj, 1 / fs)
    assert -1.7 < smooth.sparc < -1.3  # bell-shaped reach (paper: about -1.4 to -1.6)
    for jerky in (tremor, stepped, noisy):
        assert M.trajectory_metrics(jerky, 1 / fs).rms_jerk > 2 * smooth.rms_jerk
    # Broadband noise this small stays under SPARC's 5 % spectral threshold (by design), so
    # SPARC is checked on the structured disturbances.
    for jerky in (tremor, stepped):
        assert M.trajectory_metrics(jerky, 1 / fs).sparc < smooth.sparc - 0.05
    assert smooth.path_length == pytest.approx(math.hypot(1, 0.5), rel=1e-3)
    assert smooth.duration_s == pytest.approx(1.0)


def test_sparc_cutoff_cap_at_10_hz():
    # A 25 Hz ripple lies above the 10 Hz cap: it must not change SPARC at all.
    fs = 200.0
    t = np.arange(-1.5, 1.5, 1 / fs)
    v = np.exp(-t * t / (2 * 0.2**2))
    rippled = v + 0.2 * np.cos(2 * np.pi * 25 * t) * v
    assert M.sparc(rippled, fs) == pytest.approx(M.sparc(v, fs), abs=0.02)
    assert M.sparc(rippled, fs, max_cutoff_hz=40.0) < M.sparc(v, fs) - 0.5


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 4 samples, got 3"):
        M.jerk(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError, match="dt must be"):
        M.rms_jerk(np.zeros((10, 2)), 0.0)
    with pytest.raises(ValueError, match="non-finite value at step 5"):
        x = np.zeros((10, 2))
        x[5, 1] = np.nan
        M.rms_jerk(x, 0.1)
    with pytest.raises(ValueError, match="no movement"):
        M.sparc(np.zeros(50), 100.0)
    assert math.isnan(M.trajectory_metrics(np.zeros((10, 3)), 0.1).sparc)


def test_success_rate_and_wilson_interval():
    r = M.success_rate([True] * 8 + [False] * 2)
    assert (r.successes, r.n, r.rate) == (8, 10, 0.8)
    assert r.ci_low == pytest.approx(0.4902, abs=1e-3) and r.ci_high == pytest.approx(0.9433, abs=1e-3)
    zero = M.success_rate([False] * 5)
    assert zero.rate == 0 and zero.ci_low == 0 and 0.4 < zero.ci_high < 0.5
    with pytest.raises(ValueError, match="no episodes"):
        M.success_rate([])


def test_time_to_success_ignores_failures():
    tts = M.time_to_success([True, False, True, True], [2.0, None, 4.0, 3.0])
    assert (tts.n_success, tts.n, tts.mean_s, tts.median_s) == (3, 4, 3.0, 3.0)
    none = M.time_to_success([False, False], [None, None])
    assert none.n_success == 0 and math.isnan(none.mean_s)
    with pytest.raises(ValueError, match="episode 1 succeeded but has time None"):
        M.time_to_success([True, True], [1.0, None])
    with pytest.raises(ValueError, match="2 outcomes but 1 times"):
        M.time_to_success([True, True], [1.0])


def test_latency_and_staleness_summaries():
    lat = M.latency_summary(np.arange(1, 101) / 1000.0)
    assert lat.n == 100 and lat.max == pytest.approx(0.1)
    assert lat.p50 == pytest.approx(0.0505) and lat.p99 == pytest.approx(0.09901)
    st = M.staleness_summary([0, 1, 1, 2, 2, 2, -1])
    assert st.histogram == {-1: 1, 0: 1, 1: 2, 2: 3} and st.negative == 1 and st.max == 2
    with pytest.raises(ValueError, match="whole steps"):
        M.staleness_summary([0.5, 1.0])
    with pytest.raises(ValueError, match="no samples"):
        M.latency_summary([])

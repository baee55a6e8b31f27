"""Jerk of samples at their own stamps: known motions through the path real data takes.

Joint states (100 Hz) and control ticks (20 Hz) are stamped with 0-5 ms of timing jitter
(uniform in +-J or Gaussian with sigma J); each sample's position is the motion's EXACT value
at its jittered stamp, as a sensor that stamps honestly reports it. ``rms_jerk_stamped`` must
then read the motion's analytic RMS jerk within 10 %. The old table method (the newest sample
at or before each tick, differentiated with a constant dt) is run on the same samples: it reads
a smooth reach 13-40x too jerky, which is why the records now keep the raw samples.

"Analytic" is the RMS of the closed-form jerk over the time the grid's third differences cover
(dense exact evaluation). What remains between the two at zero jitter is the measure's own
band limit on the 0.05 s control grid (a third difference over dt reads a component of
frequency f at sinc(f dt)^3), 1-5 % here; jitter must add no more than 1 % to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla_eval import metrics as M

DT = 0.05                # the control period: the grid the records measure on
JOINT_RATE = 100.0       # /joint_states
TICK_RATE = 20.0         # expert ticks (commands)
JITTERS = [(0.0, "uniform"), (0.002, "uniform"), (0.002, "gaussian"), (0.005, "uniform"),
           (0.005, "gaussian")]
DIRECTION = np.array([1.0, -0.5])  # two joints moving together: jerk norm = |j| * |DIRECTION|


# -- motions with a closed-form jerk (position, jerk) ------------------------------------------

def reach(t, A=1.0, T=1.44, start=0.5):
    """Minimum-jerk reach of A rad in T s after a hold (RMS jerk over the reach 60 A / T^3 *
    sqrt(0.2) = 8.99 rad/s^3, the smooth reach of issue #14), then a hold."""
    s = np.clip((t - start) / T, 0.0, 1.0)
    inside = (t >= start) & (t <= start + T)
    return (A * (10 * s**3 - 15 * s**4 + 6 * s**5),
            np.where(inside, 60 * A / T**3 * (1 - 6 * s + 6 * s * s), 0.0))


def sinusoid(t, A=0.05, f=1.0):
    """A sin(w t): jerk amplitude w^3 A (RMS w^3 A / sqrt 2 = 8.8 rad/s^3 here)."""
    w = 2 * math.pi * f
    return A * np.sin(w * t), -A * w**3 * np.cos(w * t)


def staircase(t, d=0.05, tau=0.6):
    """Jerky: a staircase of d-rad minimum-jerk steps, one every tau s (jerk 60 d / tau^3 (1 - 6s
    + 6s^2) within each step, RMS 6.2 rad/s^3; one reach over the same 0.25 rad in 2.5 s: 0.43)."""
    k = np.floor(t / tau)
    s = t / tau - k
    return d * (k + 10 * s**3 - 15 * s**4 + 6 * s**5), 60 * d / tau**3 * (1 - 6 * s + 6 * s * s)


def accel_steps(t, a=1.5, ta=0.3, tc=0.5, start=0.3):
    """Trapezoidal velocity (how the scripted demonstrator moves): acceleration steps of 1.5
    rad/s^2, i.e. jerk impulses -- infinite in continuous time; its reference is the measure
    on a jitter-free grid."""
    u = np.clip(t - start, 0.0, None)
    v = a * ta
    x = np.where(u < ta, 0.5 * a * u * u,
                 np.where(u < ta + tc, 0.5 * a * ta * ta + v * (u - ta),
                          np.where(u < 2 * ta + tc,
                                   0.5 * a * ta * ta + v * tc + v * (u - ta - tc)
                                   - 0.5 * a * (u - ta - tc) ** 2,
                                   a * ta * ta + v * tc)))
    return x, np.full_like(t, np.nan)


MOTIONS = {"reach": (reach, 2.44), "sinusoid": (sinusoid, 3.0), "staircase": (staircase, 3.0)}


# -- the sampling path ----------------------------------------------------------------------

def jittered_stamps(rate: float, duration: float, jitter: float, kind: str, seed: int) -> np.ndarray:
    """Nominal k / rate stamps plus timing jitter, in arrival order (Gaussian jitter reorders)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration + 1e-9, 1.0 / rate)
    noise = rng.uniform(-jitter, jitter, t.size) if kind == "uniform" else rng.normal(0, jitter, t.size)
    return t + noise


def sample(motion, stamps: np.ndarray) -> np.ndarray:
    """(N, 2) positions: the motion's exact value at each stamp."""
    return motion(stamps)[0][:, None] * DIRECTION[None, :]


def analytic_rms_jerk(motion, stamps: np.ndarray, dt: float = DT) -> float:
    """Closed-form RMS jerk over what the grid's third differences cover: the grid runs from the
    first stamp every dt; its m - 3 differences stand for [t0 + dt, t0 + (m - 2) dt]."""
    t0, t1 = float(np.min(stamps)), float(np.max(stamps))
    m = int(math.floor((t1 - t0) / dt * (1 + 1e-12))) + 1
    t = np.linspace(t0 + dt, t0 + (m - 2) * dt, 200_001)
    j = motion(t)[1]
    return float(np.sqrt(np.trapezoid(j * j, t) / (t[-1] - t[0]))) * float(np.linalg.norm(DIRECTION))


def on_clean_grid(motion, stamps: np.ndarray, dt: float = DT) -> float:
    """The measure on the same grid with exact positions (what jitter must not change)."""
    t0, t1 = float(np.min(stamps)), float(np.max(stamps))
    grid = t0 + np.arange(int(math.floor((t1 - t0) / dt * (1 + 1e-12))) + 1) * dt
    return M.rms_jerk(sample(motion, grid), dt)


def tick_method(stamps: np.ndarray, q: np.ndarray, ticks: np.ndarray, dt: float = DT) -> float:
    """The old table: the newest sample at or before each tick, constant dt (rollout before)."""
    order = np.argsort(stamps, kind="stable")
    st, sq = stamps[order], q[order]
    idx = np.clip(np.searchsorted(st, np.sort(ticks), side="right") - 1, 0, st.size - 1)
    return M.rms_jerk(sq[idx], dt)


# -- reading known motions through jitter ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(MOTIONS))
@pytest.mark.parametrize("jitter,kind", JITTERS)
def test_joint_samples_read_their_analytic_jerk_through_jitter(name, jitter, kind):
    motion, duration = MOTIONS[name]
    stamps = jittered_stamps(JOINT_RATE, duration, jitter, kind, seed=11)
    read = M.rms_jerk_stamped(stamps, sample(motion, stamps), DT)
    analytic = analytic_rms_jerk(motion, stamps)
    assert read == pytest.approx(analytic, rel=0.10), (name, jitter, kind)
    assert read == pytest.approx(on_clean_grid(motion, stamps), rel=0.01)  # jitter adds < 1 %


@pytest.mark.parametrize("name", sorted(MOTIONS))
@pytest.mark.parametrize("jitter,kind", JITTERS)
def test_commands_at_tick_stamps_read_their_analytic_jerk(name, jitter, kind):
    # one sample per grid period (a command per tick), the tick stamps jittered
    motion, duration = MOTIONS[name]
    stamps = jittered_stamps(TICK_RATE, duration, jitter, kind, seed=12) + DT  # target time
    read = M.rms_jerk_stamped(stamps, sample(motion, stamps), DT)
    assert read == pytest.approx(analytic_rms_jerk(motion, stamps), rel=0.10), (name, jitter, kind)
    assert read == pytest.approx(on_clean_grid(motion, stamps), rel=0.01)


def test_jerky_reads_far_above_smooth_through_jitter():
    stamps = jittered_stamps(JOINT_RATE, 3.0, 0.005, "gaussian", seed=13)
    smooth = M.rms_jerk_stamped(stamps, sample(lambda t: reach(t, 0.25, 2.5, 0.25), stamps), DT)
    jerky = M.rms_jerk_stamped(stamps, sample(staircase, stamps), DT)
    assert jerky > 10 * smooth  # the same 0.25 rad, in one reach or in five steps


@pytest.mark.parametrize("jitter,kind", JITTERS)
def test_acceleration_steps_read_as_on_a_clean_grid(jitter, kind):
    stamps = jittered_stamps(JOINT_RATE, 2.0, jitter, kind, seed=14)
    read = M.rms_jerk_stamped(stamps, sample(accel_steps, stamps), DT)
    assert read == pytest.approx(on_clean_grid(accel_steps, stamps), rel=0.05)


@pytest.mark.parametrize("jitter,kind", [j for j in JITTERS if j[0] > 0])
def test_the_old_tick_method_is_off_by_an_order_of_magnitude(jitter, kind):
    """Same samples, 20 Hz ticks with the same jitter: newest sample before each tick + constant
    dt (issue #14: 8.9 rad/s^3 read as 85 at 2 ms, 134 at 4 ms). The grid reads it within 10 %."""
    stamps = jittered_stamps(JOINT_RATE, 2.44, jitter, kind, seed=15)
    q = sample(reach, stamps)
    ticks = jittered_stamps(TICK_RATE, 2.4, jitter, kind, seed=16) + 0.02
    analytic = analytic_rms_jerk(reach, stamps)
    old = tick_method(stamps, q, ticks)
    new = M.rms_jerk_stamped(stamps, q, DT)
    assert old > 5 * analytic, (old, analytic)
    assert new == pytest.approx(analytic, rel=0.10)


def test_without_jitter_the_old_and_new_readings_agree():
    stamps = np.arange(0.0, 2.44 + 1e-9, 1 / JOINT_RATE)
    q = sample(reach, stamps)
    ticks = np.arange(0.0, 2.4 + 1e-9, DT)
    assert M.rms_jerk_stamped(stamps, q, DT) == pytest.approx(tick_method(stamps, q, ticks), rel=1e-6)


# -- resampling: equality on a clean grid, ordering, duplicates, gaps, errors -----------------

def test_on_grid_samples_equal_the_uniform_metrics():
    t = np.arange(60) * DT
    x = np.stack([0.7 * t**3 - 1.3 * t**2, np.sin(3 * t)], axis=1)
    assert M.rms_jerk_stamped(t, x, DT) == pytest.approx(M.rms_jerk(x, DT), rel=1e-9)
    a, b = M.trajectory_metrics(x, DT), M.trajectory_metrics_stamped(t, x, DT)
    for f in ("duration_s", "rms_jerk", "sparc", "peak_velocity", "peak_acceleration", "path_length"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-9), f
    # wall-clock stamps (seconds since 1970) read the same as times from zero
    assert M.rms_jerk_stamped(t + 1.7e9, x, DT) == pytest.approx(M.rms_jerk(x, DT), rel=1e-4)


def test_cubics_are_resampled_exactly_at_any_spacing():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0.0, 2.0, 80))  # spacing 0-0.1 s
    x = 0.4 * t**3 - t**2 + 0.2
    u = M.resample_uniform(t, x, 0.01, max_gap_s=1.0)
    np.testing.assert_allclose(u.positions[:, 0], 0.4 * (u.times) ** 3 - u.times**2 + 0.2,
                               atol=1e-12)
    assert u.valid.all() and u.times[0] == t[0] and u.times[-1] <= t[-1]
    np.testing.assert_allclose(M.stamped_jerk(t, x, 0.05, max_gap_s=1.0), 2.4, rtol=1e-6)
    # by default a spacing over 2.5 grid periods is a gap: bridged linearly, marked invalid
    u = M.resample_uniform(t, x, 0.01)
    assert not u.valid.all() and u.valid.any()


def test_unsorted_and_duplicate_stamps():
    stamps = jittered_stamps(JOINT_RATE, 2.44, 0.002, "uniform", seed=1)
    q = sample(reach, stamps)
    ref = M.rms_jerk_stamped(stamps, q, DT)
    perm = np.random.default_rng(2).permutation(stamps.size)
    assert M.rms_jerk_stamped(stamps[perm], q[perm], DT) == pytest.approx(ref, rel=1e-12)
    # a republished sample (same stamp) is dropped; the first one at a stamp is kept
    dup_t = np.concatenate([stamps, stamps[10:20]])
    dup_q = np.concatenate([q, q[10:20] + 5.0])
    assert M.rms_jerk_stamped(dup_t, dup_q, DT) == pytest.approx(ref, rel=1e-12)


def test_gaps_are_not_interpolated_across():
    stamps = jittered_stamps(JOINT_RATE, 3.0, 0.002, "uniform", seed=3)
    keep = (stamps < 1.0) | (stamps > 1.4)  # 0.4 s of lost joint states during the reach
    q = sample(reach, stamps)
    u = M.resample_uniform(stamps[keep], q[keep], DT)
    inside = (u.times > 1.0 + 1e-9) & (u.times < 1.4 - 1e-9)
    assert not u.valid[inside].any() and u.valid[~inside].all()
    j = M.stamped_jerk(stamps[keep], q[keep], DT)
    assert j.shape[0] == int(u.runs(4).sum()) < u.times.size - 3
    # what is left reads as the clean grid does away from the gap
    full = M.stamped_jerk(stamps, q, DT)
    assert np.sqrt(np.mean(j**2)) < 1.5 * np.sqrt(np.mean(full**2))
    # allowing a longer gap bridges it with the cubic (every grid point valid)
    assert M.resample_uniform(stamps[keep], q[keep], DT, max_gap_s=0.5).valid.all()


def test_stamped_metrics_of_a_reach_through_jitter():
    # peak speed 1.875 A / T, peak acceleration 10 / sqrt(3) A / T^2, SPARC of a bell-shaped reach
    stamps = jittered_stamps(JOINT_RATE, 2.44, 0.005, "gaussian", seed=4)
    m = M.trajectory_metrics_stamped(stamps, reach(stamps)[0], DT)
    assert m.peak_velocity == pytest.approx(1.875 / 1.44, rel=0.02)
    assert m.peak_acceleration == pytest.approx(10 / math.sqrt(3) / 1.44**2, rel=0.05)
    assert -1.9 < m.sparc < -1.3
    assert m.path_length == pytest.approx(1.0, rel=1e-3)


def test_stamped_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs at least 4 consecutive grid points"):
        M.rms_jerk_stamped([0.0, 0.05, 0.1], np.zeros((3, 2)), DT)
    with pytest.raises(ValueError, match=">= 2 distinct stamps, got 1"):
        M.rms_jerk_stamped([0.3, 0.3, 0.3], np.zeros((3, 2)), DT)
    with pytest.raises(ValueError, match="3 stamps for 4 samples"):
        M.resample_uniform([0.0, 0.1, 0.2], np.zeros((4, 2)), DT)
    with pytest.raises(ValueError, match="stamp 1 is not finite"):
        M.resample_uniform([0.0, np.nan, 0.2], np.zeros((3, 2)), DT)
    with pytest.raises(ValueError, match="non-finite value at step 2"):
        M.resample_uniform([0.0, 0.1, 0.2], [0.0, 1.0, np.inf], DT)
    with pytest.raises(ValueError, match="dt must be"):
        M.resample_uniform([0.0, 0.1, 0.2], np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="max_gap_s"):
        M.resample_uniform([0.0, 0.1, 0.2], np.zeros(3), DT, max_gap_s=-1.0)
    # a gap wherever 4 grid points would fit: no jerk to report
    with pytest.raises(ValueError, match="without a gap"):
        M.rms_jerk_stamped([0.0, 0.05, 0.1, 1.0, 1.05, 1.1], np.zeros(6), DT)

"""trajectory.py: JTC-safe trajectories by construction, whatever the model outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arvla_action_expert.joints import JointLimits
from arvla_action_expert.trajectory import TrajectoryError, TrajectoryPlan, build_plan, check_plan, hold_plan

PERIOD = 50_000_000  # 20 Hz
LIMITS = JointLimits(("a", "b"), np.array([-1.0, -2.0]), np.array([1.0, 2.0]), np.array([1.0, 4.0]))


def test_targets_inside_limits_are_followed_with_times_one_period_apart():
    targets = np.array([[0.01, 0.1], [0.02, 0.2], [0.03, 0.3]])
    plan = build_plan(np.zeros(2), targets, PERIOD, LIMITS)
    np.testing.assert_array_equal(plan.times_ns, [PERIOD, 2 * PERIOD, 3 * PERIOD])
    np.testing.assert_allclose(plan.positions, targets)
    # velocities: mean of adjacent segments (0.2 and 2.0 per s), last zero
    np.testing.assert_allclose(plan.velocities, [[0.2, 2.0], [0.2, 2.0], [0.0, 0.0]])
    assert plan.n_clamped == 0 and plan.n_nonfinite == 0


def test_per_step_motion_is_limited_by_velocity_then_position():
    # joint a may move 1.0 rad/s * 0.05 s = 0.05 per step; b 0.2 per step
    plan = build_plan(np.array([0.98, 0.0]), np.array([[5.0, -5.0], [5.0, -5.0]]), PERIOD, LIMITS)
    np.testing.assert_allclose(plan.positions, [[1.0, -0.2], [1.0, -0.4]])
    assert plan.n_clamped == 4
    assert np.all(np.abs(plan.velocities) <= LIMITS.max_velocity)


def test_nonfinite_targets_hold_that_joint_and_are_counted():
    plan = build_plan(np.array([0.5, 0.5]), np.array([[np.nan, 0.6], [np.inf, -np.inf]]), PERIOD, LIMITS)
    np.testing.assert_allclose(plan.positions, [[0.5, 0.6], [0.5, 0.6]])
    assert plan.n_nonfinite == 3


def test_measured_position_outside_limits_is_clamped_before_use():
    plan = hold_plan(np.array([1.02, -2.5]), PERIOD, LIMITS)
    np.testing.assert_allclose(plan.positions, [[1.0, -2.0]])
    np.testing.assert_array_equal(plan.velocities, [[0.0, 0.0]])
    np.testing.assert_array_equal(plan.times_ns, [PERIOD])


@pytest.mark.parametrize("current", [np.array([np.nan, 0.0]), np.array([0.0, np.inf])])
def test_nonfinite_measured_position_raises(current):
    with pytest.raises(TrajectoryError, match="not finite"):
        hold_plan(current, PERIOD, LIMITS)
    with pytest.raises(TrajectoryError, match="not finite"):
        build_plan(current, np.zeros((2, 2)), PERIOD, LIMITS)


def test_wrong_shapes_raise_with_the_shape():
    with pytest.raises(TrajectoryError, match=r"\(K>=1, 2\), got shape \(3,\)"):
        build_plan(np.zeros(2), np.zeros(3), PERIOD, LIMITS)
    with pytest.raises(TrajectoryError, match="3 values for 2 joints"):
        hold_plan(np.zeros(3), PERIOD, LIMITS)
    with pytest.raises(TrajectoryError, match="period"):
        hold_plan(np.zeros(2), 0, LIMITS)


def _good() -> TrajectoryPlan:
    return build_plan(np.zeros(2), np.array([[0.04, 0.1], [0.08, 0.2]]), PERIOD, LIMITS)


@pytest.mark.parametrize("corrupt, match", [
    (lambda p: dataclasses.replace(p, times_ns=np.array([0, PERIOD])), "strictly increasing"),
    (lambda p: dataclasses.replace(p, times_ns=np.array([PERIOD, PERIOD])), "strictly increasing"),
    (lambda p: dataclasses.replace(p, velocities=p.velocities + 0.01), "last point velocity"),
    (lambda p: dataclasses.replace(p, positions=p.positions * np.nan), "NaN/inf"),
    (lambda p: dataclasses.replace(p, positions=p.positions + [[0, 0], [0, 2.0]]), "outside"),
    (lambda p: dataclasses.replace(p, positions=p.positions + [[0.04, 0], [0.04, 0]]), "segment 0 moves joint a"),
    (lambda p: dataclasses.replace(p, velocities=np.array([[0.0, 9.0], [0.0, 0.0]])), "velocity limits"),
])
def test_final_check_catches_each_broken_rule(corrupt, match):
    check_plan(_good(), np.zeros(2), LIMITS)
    with pytest.raises(TrajectoryError, match=match):
        check_plan(corrupt(_good()), np.zeros(2), LIMITS)


_any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def _case(draw):
    j = draw(st.integers(1, 4))
    k = draw(st.integers(1, 6))
    lower = np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=j, max_size=j)))
    span = np.array(draw(st.lists(st.floats(1e-3, 1e6), min_size=j, max_size=j)))
    vmax = np.array(draw(st.lists(st.floats(1e-3, 1e300), min_size=j, max_size=j)))
    limits = JointLimits(tuple(f"q{i}" for i in range(j)), lower, lower + span, vmax)
    current = draw(hnp.arrays(np.float64, j, elements=st.floats(-1e300, 1e300)))
    targets = draw(hnp.arrays(np.float64, (k, j), elements=_any_float))
    period = draw(st.integers(1_000_000, 1_000_000_000))
    return limits, current, targets, period


@settings(max_examples=300, deadline=None)
@given(_case())
def test_property_any_model_output_gives_a_well_formed_trajectory_inside_limits(case):
    limits, current, targets, period = case
    plan = build_plan(current, targets, period, limits)
    # independent re-statement of the JTC + limit rules (not via check_plan)
    k = targets.shape[0]
    assert plan.positions.shape == plan.velocities.shape == (k, limits.dof)
    assert np.all(np.isfinite(plan.positions)) and np.all(np.isfinite(plan.velocities))
    assert plan.times_ns[0] > 0 and np.all(np.diff(plan.times_ns) > 0)
    assert np.all(plan.velocities[-1] == 0.0)
    assert np.all(plan.positions >= limits.lower) and np.all(plan.positions <= limits.upper)
    assert np.all(np.abs(plan.velocities) <= limits.max_velocity)
    prev = np.clip(current, limits.lower, limits.upper)
    for row in plan.positions:
        step = np.abs(row - prev)
        rounding = 4 * np.spacing(np.maximum(np.abs(row), np.abs(prev)))  # prev +- v*dt rounds at prev's ulp
        with np.errstate(over="ignore"):
            assert np.all(step <= limits.max_velocity * (period * 1e-9) + rounding)
        prev = row
    assert plan.n_nonfinite == int(np.count_nonzero(~np.isfinite(targets)))


def test_kept_point_starts_the_plan_and_the_rows_follow_one_period_later():
    from arvla_action_expert.trajectory import KeptPoint

    targets = np.array([[0.03, 0.3], [0.04, 0.4]])
    keep = KeptPoint(PERIOD + 2_000_000, np.array([0.02, 0.2]), np.array([0.3, 1.5]))
    plan = build_plan(np.array([0.01, 0.1]), targets, PERIOD, LIMITS, keep=keep)
    assert plan.kept and plan.n_points == 3
    np.testing.assert_array_equal(plan.times_ns, [PERIOD + 2_000_000, 2 * PERIOD, 3 * PERIOD])
    np.testing.assert_allclose(plan.positions, [[0.02, 0.2], [0.03, 0.3], [0.04, 0.4]])
    np.testing.assert_array_equal(plan.velocities[0], [0.3, 1.5])  # exactly as sent before
    # the first new segment is 48 ms long: its velocity bound uses that duration
    fast = build_plan(np.array([0.01, 0.1]), np.array([[1.0, 0.2], [1.0, 0.2]]), PERIOD, LIMITS, keep=keep)
    assert fast.positions[1, 0] == pytest.approx(0.02 + 1.0 * 0.048)
    # one row is enough: the kept point, then row 0 (stopping there)
    one = build_plan(np.array([0.01, 0.1]), targets[:1], PERIOD, LIMITS, keep=keep)
    assert one.kept and one.n_points == 2 and np.all(one.velocities[-1] == 0)


@pytest.mark.parametrize("why,keep_kwargs", [
    ("not finite", dict(velocity=np.array([np.nan, 0.0]))),
    ("in the past", dict(t_ns=0)),
    ("two periods ahead", dict(t_ns=2 * PERIOD)),
])
def test_an_unusable_kept_point_is_dropped_and_the_plan_starts_from_the_measurement(why, keep_kwargs):
    from arvla_action_expert.trajectory import KeptPoint

    base = dict(t_ns=PERIOD + 2_000_000, position=np.array([0.02, 0.2]), velocity=np.array([0.3, 1.5]))
    keep = KeptPoint(**{**base, **keep_kwargs})
    targets = np.array([[0.02, 0.15], [0.03, 0.3]])
    plan = build_plan(np.array([0.01, 0.1]), targets, PERIOD, LIMITS, keep=keep)
    assert not plan.kept, why
    np.testing.assert_array_equal(plan.times_ns, [PERIOD, 2 * PERIOD])
    np.testing.assert_allclose(plan.positions, targets)


@pytest.mark.parametrize("why,position,velocity,expected_pos,expected_vel", [
    # a gripper closed on an object: its command is further from the measurement than one step
    ("joint a out of reach", [0.2, 0.2], [0.3, 1.5], [0.01 + 0.052, 0.2], [0.0, 1.5]),
    ("joint a outside its position limit", [1.01, 0.2], [0.3, 1.5], [0.01 + 0.052, 0.2], [0.0, 1.5]),
    ("joint b velocity over the limit", [0.02, 0.2], [0.3, 5.0], [0.02, 0.2], [0.3, 4.0]),
])
def test_a_kept_point_is_moved_per_joint_into_what_every_first_point_obeys(why, position, velocity,
                                                                            expected_pos, expected_vel):
    from arvla_action_expert.trajectory import KeptPoint

    keep = KeptPoint(PERIOD + 2_000_000, np.array(position), np.array(velocity))
    plan = build_plan(np.array([0.01, 0.1]), np.array([[0.03, 0.3]]), PERIOD, LIMITS, keep=keep)
    assert plan.kept and plan.n_clamped == 1, why
    np.testing.assert_allclose(plan.positions[0], expected_pos)
    np.testing.assert_allclose(plan.velocities[0], expected_vel)

"""Property-based tests (hypothesis) of the re-anchoring rules and the trajectory builder, and a
fuzzed stream of inputs into a running expert node.

Whatever the inputs (NaN, inf, 1e300, reversed or zero-width limits...), either the config is
refused when it is built, or the trajectory that reaches ros2_control is well formed and inside
the limits -- checked by ``faultlib.trajectory_problems``, not by the builder's own check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from arvla_base.config import ConfigError
from arvla_action_expert.joints import JointError, JointLimits
from arvla_action_expert.node_config import ExpertNodeConfig
from arvla_action_expert.reanchor import PrefixDecision, decide_prefix, staleness, time_to_step
from arvla_action_expert.trajectory import TrajectoryError, build_plan, hold_plan
from faultlib import trajectory_problems

I64 = st.integers(min_value=-(2**62), max_value=2**62)
PERIOD = st.integers(min_value=1, max_value=10**10)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)
WILD = st.one_of(ANY_FLOAT, st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-300, math.nan, math.inf, -math.inf]))


# --------------------------------------------------------------------------- re-anchoring rules


@settings(max_examples=300, deadline=None)
@given(t=I64, t0=I64, period=PERIOD)
def test_time_to_step_rounds_to_the_nearest_step(t, t0, period):
    step = time_to_step(t, t0, period)
    err = (t - t0) - step * period  # exact integers
    assert 2 * abs(err) <= period
    assert time_to_step(t0 + step * period, t0, period) == step


@settings(max_examples=300, deadline=None)
@given(a=I64, b=I64, t0=I64, period=PERIOD)
def test_time_to_step_is_monotone(a, b, t0, period):
    lo, hi = sorted((a, b))
    assert time_to_step(lo, t0, period) <= time_to_step(hi, t0, period)


@given(t=I64, t0=I64, period=st.integers(max_value=0))
def test_time_to_step_refuses_a_non_positive_period(t, t0, period):
    with pytest.raises(ValueError, match="period_ns"):
        time_to_step(t, t0, period)


@given(a=I64, b=I64)
def test_staleness_is_the_step_difference(a, b):
    assert staleness(a, b) == a - b == -staleness(b, a)


@settings(max_examples=500, deadline=None)
@given(current=I64, capture=st.one_of(st.none(), I64), max_staleness=st.integers(-5, 10**6),
       tolerance=st.integers(-5, 10**6), allow=st.booleans())
def test_decide_prefix_never_uses_a_prefix_outside_the_window(current, capture, max_staleness, tolerance, allow):
    if max_staleness < 0 or tolerance < 0:
        with pytest.raises(ValueError):
            decide_prefix(current, capture, max_staleness=max_staleness, allow_action_only=allow,
                          future_tolerance=tolerance)
        return
    d = decide_prefix(current, capture, max_staleness=max_staleness, allow_action_only=allow,
                      future_tolerance=tolerance)
    if capture is None:
        assert d is (PrefixDecision.ACTION_ONLY if allow else PrefixDecision.WAIT_MISSING)
        return
    s = current - capture
    assert (d is PrefixDecision.USE) == (-tolerance <= s <= max_staleness)
    assert (d is PrefixDecision.HOLD_STALE) == (s > max_staleness)
    assert (d is PrefixDecision.REJECT_FUTURE) == (s < -tolerance)


# --------------------------------------------------------------------------- limits at config time


@settings(max_examples=200, deadline=None)
@given(lower=WILD, upper=WILD, vmax=WILD)
def test_limits_are_refused_unless_finite_ordered_and_positive(lower, upper, vmax):
    good = all(math.isfinite(x) for x in (lower, upper, vmax)) and lower < upper and vmax > 0
    if good:
        JointLimits(("j",), np.array([lower]), np.array([upper]), np.array([vmax]))
        cfg = ExpertNodeConfig(joints=["j"], position_min=[lower], position_max=[upper], max_velocity=[vmax])
        assert cfg.joint_limits(["j"]).dof == 1
        return
    with pytest.raises(JointError):
        JointLimits(("j",), np.array([lower]), np.array([upper]), np.array([vmax]))
    with pytest.raises(ConfigError, match="joint limits"):  # the node refuses to start, naming why
        ExpertNodeConfig(joints=["j"], position_min=[lower], position_max=[upper],
                         max_velocity=[vmax]).joint_limits(["j"])


# --------------------------------------------------------------------------- trajectory builder


@st.composite
def limits_st(draw):
    j = draw(st.integers(1, 7))
    lower = np.array(draw(st.lists(st.floats(-1e4, 1e4), min_size=j, max_size=j)))
    width = np.array(draw(st.lists(st.floats(1e-3, 1e4), min_size=j, max_size=j)))
    vmax = np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=j, max_size=j)))
    upper = lower + width
    assume(np.all(upper > lower))
    return JointLimits(tuple(f"j{i}" for i in range(j)), lower, upper, vmax)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=limits_st(), data=st.data(), period_ns=st.integers(100_000, 1_000_000_000))
def test_any_targets_give_a_well_formed_trajectory_inside_the_limits(limits, data, period_ns):
    j = limits.dof
    k = data.draw(st.integers(1, 12))
    current = np.array(data.draw(st.lists(WILD, min_size=j, max_size=j)))
    targets = np.array(data.draw(st.lists(st.lists(WILD, min_size=j, max_size=j), min_size=k, max_size=k)))
    kwargs = dict(joints=limits.names, lower=limits.lower, upper=limits.upper, vmax=limits.max_velocity)
    if not np.all(np.isfinite(current)):
        with pytest.raises(TrajectoryError, match="not finite"):
            build_plan(current, targets, period_ns, limits)
        with pytest.raises(TrajectoryError, match="not finite"):
            hold_plan(current, period_ns, limits)
        return
    plan = build_plan(current, targets, period_ns, limits)
    assert plan.n_points == k
    assert trajectory_problems(limits.names, plan.times_ns.tolist(), plan.positions, plan.velocities,
                               start=current, **kwargs) == []
    assert plan.n_nonfinite == int(np.count_nonzero(~np.isfinite(targets)))
    hold = hold_plan(current, period_ns, limits)
    assert trajectory_problems(limits.names, hold.times_ns.tolist(), hold.positions, hold.velocities,
                               start=current, **kwargs) == []
    # a target inside the limits and reachable in one step is followed exactly
    inside = np.clip(current, limits.lower, limits.upper)
    plan = build_plan(current, inside[None, :], period_ns, limits)
    assert np.array_equal(plan.positions[0], inside) and plan.n_clamped == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=limits_st(), data=st.data(), period_ns=st.integers(100_000, 1_000_000_000))
def test_a_kept_point_never_makes_a_trajectory_unsafe(limits, data, period_ns):
    """trajectory_timing 'seamless': whatever the point kept from the previous plan (any values,
    any time), the plan is inside the limits from the measured position, or the point is not kept."""
    from arvla_action_expert.trajectory import KeptPoint

    j = limits.dof
    k = data.draw(st.integers(2, 6))
    current = np.clip(np.array(data.draw(st.lists(st.floats(-1e4, 1e4), min_size=j, max_size=j))),
                      limits.lower, limits.upper)
    near = data.draw(st.booleans())  # a realistic kept point: close to the measured position
    pos = (current + np.array(data.draw(st.lists(st.floats(-1, 1), min_size=j, max_size=j)))
           * limits.max_velocity * period_ns * 1e-9) if near else np.array(
        data.draw(st.lists(WILD, min_size=j, max_size=j)))
    vel = np.array(data.draw(st.lists(st.one_of(st.floats(-1e3, 1e3), WILD), min_size=j, max_size=j)))
    keep = KeptPoint(data.draw(st.integers(-period_ns, 3 * period_ns)), pos, vel)
    targets = np.array(data.draw(st.lists(st.lists(WILD, min_size=j, max_size=j), min_size=k, max_size=k)))
    plan = build_plan(current, targets, period_ns, limits, keep=keep)
    assert trajectory_problems(limits.names, plan.times_ns.tolist(), plan.positions, plan.velocities,
                               start=current, joints=limits.names, lower=limits.lower, upper=limits.upper,
                               vmax=limits.max_velocity) == []
    if plan.kept:  # per joint: the point as sent (velocity clipped to the limit), or moved and stopping
        assert plan.times_ns[0] == keep.t_ns
        same = (plan.positions[0] == pos) & (plan.velocities[0] == np.clip(vel, -limits.max_velocity,
                                                                           limits.max_velocity))
        assert np.all(same | (plan.velocities[0] == 0.0))


@given(period_ns=st.integers(max_value=0))
def test_trajectory_refuses_a_non_positive_period(period_ns):
    limits = JointLimits(("a",), np.array([-1.0]), np.array([1.0]), np.array([1.0]))
    with pytest.raises(TrajectoryError, match="period"):
        build_plan(np.zeros(1), np.zeros((1, 1)), period_ns, limits)


# --------------------------------------------------------------------------- a running node, fuzzed

EVENT = st.one_of(
    st.tuples(st.just("js"), st.lists(WILD, min_size=3, max_size=3),
              st.sampled_from(["all", "missing", "reordered", "extra", "short"])),
    st.tuples(st.just("prefix"), st.one_of(st.integers(-60, 60), st.just("zero")),
              st.sampled_from(["ok", "nan", "bad_dim", "huge_count", "huge_values", "tiny_values"])),
    st.tuples(st.just("tick"), st.integers(1, 3)),
    st.tuples(st.just("jump"), st.sampled_from([-5_000_000_000, 3_000_000_000])),
)


def test_fuzzed_inputs_into_the_running_node(expert_rig, ledger):
    """Random interleavings of joint states (NaN / inf / 1e300 / missing / reordered), prefixes
    (any stamp offset, zero stamps, NaN, wrong shapes), ticks and clock jumps: every tick answers
    and every published trajectory is well formed and inside the limits."""
    from expert_harness import JOINTS, PERIOD_NS, PREFIX_DIM
    from arvla_base.rosutil import spin_until
    from arvla_msgs.msg import ExpertStatus
    from faultlib import joint_state_msg, prefix_msg

    h, mon = expert_rig(allow_action_only=True)
    h.tick()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(events=st.lists(EVENT, min_size=1, max_size=8))
    def run(events):
        for ev in events:
            if ev[0] == "js":
                values, shape = ev[1], ev[2]
                names = {"all": JOINTS, "missing": JOINTS[:2], "reordered": JOINTS[::-1],
                         "extra": JOINTS + ["gripper"], "short": JOINTS}[shape]
                vals = {"short": values[:2], "extra": values + [0.0]}.get(shape, values)
                before = h.node.counters.joint_states_received
                h.js_pub.publish(joint_state_msg(names, vals))
                h._wait(lambda: h.node.counters.joint_states_received > before, "joint state")
                ledger.input("fuzz:joint_state")
            elif ev[0] == "prefix":
                stamp = 0 if ev[1] == "zero" else max(1, h.now_ns + ev[1] * PERIOD_NS)
                tokens, dim = (10**6, PREFIX_DIM) if ev[2] == "huge_count" else (2, PREFIX_DIM + (ev[2] == "bad_dim"))
                value = {"nan": np.nan, "huge_values": 1e30, "tiny_values": -1e-30}.get(ev[2], 0.5)
                data = np.full(2 * dim, value, np.float32)
                before = h.node.counters.prefixes_received
                h.frame_seq += 1
                h.prefix_pub.publish(prefix_msg(stamp, frame_seq=h.frame_seq, model_id="", token_count=tokens,
                                                dim=dim, data=data))
                h._wait(lambda: h.node.counters.prefixes_received > before, "prefix")
                ledger.input("fuzz:prefix")
            elif ev[0] == "tick":
                for _ in range(ev[1]):
                    h.tick()
            else:
                ledger.fault("fuzz:clock_jump")
                jump = ev[1] if h.now_ns + ev[1] > 100_000_000_000 else -ev[1]
                target = h.now_ns + jump
                h.set_clock_and_wait(target)
                spin_until(h.executor, lambda: False, 0.05)  # a forward jump may fire an overdue tick
                h.tick(target + PERIOD_NS)  # rcl re-arms the timer one period after a backward jump
        h.tick()
        assert mon.violations == [] and h.jtc.violations == []
        # whatever came before, good inputs make it run again (a poisoned memory would not); the
        # tick above judged every pending prefix, so this one is the newest
        h.joint_state({"j1": 0.1, "j2": -0.2, "j3": 0.05})
        mon.start = np.array([0.1, -0.2, 0.05])
        h.prefix(h.now_ns)
        t = h.tick()
        assert t.status.state == ExpertStatus.STATE_RUNNING, t.status.reason
        mon.start = None  # the next example's joint states are random again

    run()
    assert len(mon.messages) > 0

"""Re-anchoring rules: stamps -> steps -> staleness -> decision."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from arvla_action_expert.reanchor import (PrefixDecision, decide_prefix, sample_staleness,
                                          staleness, time_to_step)

PERIOD = 50_000_000  # 20 Hz


def test_time_to_step_rounds_to_nearest_tick_in_integers():
    t0 = 1_700_000_000_123_456_789  # a real epoch stamp: float64 would lose the last digits
    assert time_to_step(t0, t0, PERIOD) == 0
    assert time_to_step(t0 + 3 * PERIOD, t0, PERIOD) == 3
    assert time_to_step(t0 + 3 * PERIOD + PERIOD // 2 - 1, t0, PERIOD) == 3
    assert time_to_step(t0 + 3 * PERIOD + PERIOD // 2, t0, PERIOD) == 4
    assert time_to_step(t0 - 2 * PERIOD - 1, t0, PERIOD) == -2
    assert time_to_step(t0 + 10**9 * 3600 * 5, t0, PERIOD) == 20 * 3600 * 5
    with pytest.raises(ValueError, match="period_ns must be > 0, got 0"):
        time_to_step(0, 0, 0)


@given(st.integers(-10**6, 10**6), st.integers(-PERIOD // 2 + 1, PERIOD // 2 - 1))
def test_time_to_step_inverts_step_times_within_half_a_period(step, jitter):
    assert time_to_step(step * PERIOD + jitter + 7, 7, PERIOD) == step


def test_staleness_sign():
    assert staleness(10, 7) == 3
    assert staleness(7, 10) == -3


@pytest.mark.parametrize("current, capture, allow, tol, want", [
    (10, None, False, 0, PrefixDecision.WAIT_MISSING),
    (10, None, True, 0, PrefixDecision.ACTION_ONLY),
    (10, 10, False, 0, PrefixDecision.USE),
    (10, 2, False, 0, PrefixDecision.USE),          # staleness 8 == max: still usable
    (10, 1, False, 0, PrefixDecision.HOLD_STALE),   # staleness 9 > 8
    (10, 11, False, 0, PrefixDecision.REJECT_FUTURE),
    (10, 11, False, 1, PrefixDecision.USE),         # within future tolerance
    (10, 12, True, 1, PrefixDecision.REJECT_FUTURE),
])
def test_decide_prefix_rules(current, capture, allow, tol, want):
    got = decide_prefix(current, capture, max_staleness=8, allow_action_only=allow,
                        future_tolerance=tol)
    assert got is want


def test_decide_prefix_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_staleness must be >= 0, got -1"):
        decide_prefix(0, 0, max_staleness=-1, allow_action_only=False)
    with pytest.raises(ValueError, match="future_tolerance must be >= 0, got -2"):
        decide_prefix(0, 0, max_staleness=1, allow_action_only=False, future_tolerance=-2)


def test_sample_staleness_covers_the_range_and_is_reproducible():
    a = sample_staleness(torch.Generator().manual_seed(0), (4000,), 5)
    b = sample_staleness(torch.Generator().manual_seed(0), 4000, 5)
    assert a.dtype == torch.int64 and a.shape == (4000,)
    assert torch.equal(a, b)
    assert set(a.tolist()) == {0, 1, 2, 3, 4, 5}
    assert sample_staleness(None, (2, 3), 0).eq(0).all()
    with pytest.raises(ValueError, match="max_staleness must be >= 0, got -1"):
        sample_staleness(None, 3, -1)

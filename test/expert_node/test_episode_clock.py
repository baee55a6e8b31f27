"""The node's pure helpers: EpisodeClock (tick -> step) and prefix_problem (what makes a prefix unusable)."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_action_expert.node import EpisodeClock, ReceivedPrefix, prefix_problem

P = 20_000_000  # 50 Hz


def test_steps_follow_time_from_the_first_tick():
    c = EpisodeClock(P)
    t0 = 7_000_000_123
    assert c.tick(t0) == (0, False, 0)
    assert c.tick(t0 + P + P // 3) == (1, False, 0)  # jitter rounds to the nearest step
    assert c.tick(t0 + 2 * P - P // 3) == (2, False, 0)
    assert c.step_of(t0 - 3 * P) == -3


def test_an_early_tick_still_advances_and_a_late_one_counts_skipped_steps():
    c = EpisodeClock(P)
    c.tick(0 + 10 * P)
    assert c.tick(10 * P + P // 3) == (1, False, 0)  # rounds to step 0 again: forced to 1
    step, late, dropped = c.tick(10 * P + 4 * P)
    assert (step, late, dropped) == (4, True, 2)


def test_backward_jump_is_detected_and_needs_a_reset():
    c = EpisodeClock(P)
    c.tick(100 * P)
    assert c.jumped_back(99 * P) and not c.jumped_back(101 * P)
    with pytest.raises(ValueError, match="reset"):
        c.tick(99 * P)
    c.reset()
    assert c.tick(99 * P) == (0, False, 0)
    with pytest.raises(ValueError, match="origin"):
        EpisodeClock(P).step_of(0)


def _prefix(**kw):
    base = dict(stamp_ns=1, frame_seq=1, model_id="m", token_count=2, dim=4, data=np.zeros(8, np.float32))
    base.update(kw)
    return ReceivedPrefix(**base)


@pytest.mark.parametrize("kw, policy_id, expected", [
    ({}, "m", None),
    ({}, "", None),
    ({"model_id": ""}, "m", None),
    ({"model_id": "x"}, "m", "prefix model_id 'x' != policy model_id 'm'"),
    ({"dim": 5, "data": np.zeros(10, np.float32)}, "m", "prefix dim 5 != policy prefix_dim 4"),
    ({"token_count": 0, "data": np.zeros(0, np.float32)}, "m", "prefix token_count 0 not in [1, 3]"),
    ({"data": np.zeros(7, np.float32)}, "m", "prefix data has 7 values, header says 2 x 4 = 8"),
    ({"data": np.array([0, 0, 0, np.inf, 0, 0, 0, 0], np.float32)}, "m", "prefix data contains NaN/inf"),
])
def test_prefix_problem(kw, policy_id, expected):
    assert prefix_problem(_prefix(**kw), model_id=policy_id, prefix_dim=4, max_tokens=3) == expected

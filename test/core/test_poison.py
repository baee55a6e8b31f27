"""Nothing non-finite survives in the expert's memory (issue #19, defect 1).

A finite but huge prefix (every value 1e30) overflowed the prefix encoder, left NaN keys/values
in the prefix slot, and ``reset()`` kept them: a hidden slot still enters the attention matmul
with weight 0, and 0 x NaN = NaN, so every later step was NaN until a restart.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arvla_action_expert.cache import CacheError, HybridKVCache
from arvla_action_expert.policy import ExpertPolicy
from core_helpers import tiny_config

CFG = tiny_config(state_dim=3, action_dim=3, window=5)
STATE = np.array([0.1, -0.2, 0.3])


def _policy() -> ExpertPolicy:
    return ExpertPolicy.build_untrained(CFG, seed=7)


def _good_tokens(seed: int = 0, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, CFG.prefix_dim)).astype(np.float32)


def _reference(steps: range) -> np.ndarray:
    """What a fresh policy does from a clean start with the good prefix."""
    p = _policy()
    p.refresh_prefix(_good_tokens(), 0)
    return np.stack([p.step(STATE, t, lookahead=2) for t in steps])


def test_huge_prefix_is_refused_and_the_prefix_in_use_stays():
    p = _policy()
    p.refresh_prefix(_good_tokens(), 0)
    first = p.step(STATE, 0, lookahead=2)
    with pytest.raises(ValueError, match="NaN/inf.*not installed.*1e\\+30"):
        p.refresh_prefix(np.full((5, CFG.prefix_dim), 1e30, np.float32), 1)
    assert p.prefix_capture_step == 0  # the good prefix is still in the slot
    out = p.step(STATE, 1, lookahead=2)
    assert np.isfinite(out).all()
    # after a reset the policy is exactly a fresh one: nothing of the attempt survives
    p.reset()
    p.refresh_prefix(_good_tokens(), 0)
    again = np.stack([p.step(STATE, t, lookahead=2) for t in range(4)])
    np.testing.assert_array_equal(again, _reference(range(4)))
    np.testing.assert_array_equal(again[0], first)


def test_poison_written_into_the_cache_is_wiped_by_reset():
    """Even NaN that reached the tensors by some other path (a bug, a bit flip) is gone after
    reset(): every slot is zeroed, so masked slots cannot leak 0 x NaN."""
    p = _policy()
    p.refresh_prefix(_good_tokens(), 0)
    p.step(STATE, 0)
    p.cache.k.fill_(float("nan"))
    p.cache.v.fill_(float("inf"))
    p.reset()
    p.refresh_prefix(_good_tokens(), 0)
    out = np.stack([p.step(STATE, t, lookahead=2) for t in range(4)])
    np.testing.assert_array_equal(out, _reference(range(4)))


def test_a_non_finite_step_token_is_not_committed():
    cache = HybridKVCache(n_layer=2, n_head=1, head_dim=2, window=3, max_prefix_tokens=2, max_lookahead=2)
    cache.begin_step(0, commit=True)
    cache.keys_values(0, torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    cache.keys_values(1, torch.full((1, 1, 1, 2), float("nan")), torch.ones(1, 1, 1, 2))
    with pytest.raises(CacheError, match="not finite"):
        cache.end_step()
    assert cache.fill == 0 and cache.last_step is None
    assert torch.isfinite(cache.k).all() and torch.isfinite(cache.v).all()
    cache.begin_step(0, commit=True)  # the same step can be taken again
    cache.end_step()
    assert cache.fill == 1


def test_a_shorter_prefix_leaves_no_stale_tokens():
    p = _policy()
    p.refresh_prefix(_good_tokens(1, n=5), 0)
    p.refresh_prefix(_good_tokens(2, n=2), 1)
    assert torch.count_nonzero(p.cache.k[:, :, :, 2: CFG.max_prefix_tokens]) == 0
    p.clear_prefix()
    assert torch.count_nonzero(p.cache.k[:, :, :, : CFG.max_prefix_tokens]) == 0


MAGNITUDE = st.builds(lambda e, sign: sign * 10.0 ** e, st.floats(-30, 38.5), st.sampled_from([1.0, -1.0]))
EXTREME = st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 3.4e38, -3.4e38, 1e23, -1e23, 1.0])


@st.composite
def prefix_tokens(draw) -> np.ndarray:
    n = draw(st.integers(1, CFG.max_prefix_tokens))
    scale = draw(MAGNITUDE)
    values = np.full((n, CFG.prefix_dim), scale, np.float64)
    if draw(st.booleans()):  # mixed: some entries replaced by other finite extremes
        flat = values.reshape(-1)
        for i in draw(st.lists(st.integers(0, flat.size - 1), max_size=6)):
            flat[i] = draw(EXTREME)
    tokens = values.astype(np.float32)  # what a VLPrefix carries (float32[])
    return np.where(np.isfinite(tokens), tokens, np.float32(3.4e38))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(prefix_tokens(), min_size=1, max_size=4))
def test_any_prefix_magnitude_runs_or_refuses_and_a_valid_prefix_always_runs_again(events):
    """Prefixes of every magnitude 1e-30 .. 3.4e38 (both signs, mixed with other finite
    extremes): refresh either installs the prefix or refuses it (ValueError); a step either
    gives finite targets or refuses (ValueError) without storing anything; after a valid
    prefix the policy runs, finite, for a whole window and beyond."""
    p = _policy()
    t = 0
    for tokens in events:
        try:
            p.refresh_prefix(tokens, t)
        except ValueError as err:
            assert "NaN/inf" in str(err)
        for _ in range(2):
            try:
                out = p.step(STATE, t, lookahead=2)
                assert np.isfinite(out).all()
            except ValueError as err:
                assert "NaN/inf" in str(err)
            t += 1
        assert torch.isfinite(p.cache.k).all() and torch.isfinite(p.cache.v).all()
    p.refresh_prefix(_good_tokens(), t)
    for _ in range(CFG.window + 2):
        out = p.step(STATE, t, lookahead=2)
        assert np.isfinite(out).all() and all(math.isfinite(x) for x in out.ravel())
        t += 1

"""ExpertPolicy: the contract the expert node codes against."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arvla_action_expert.model import ExpertConfig
from arvla_action_expert.policy import ExpertPolicy
from core_helpers import tiny_config


def tiny(**kw) -> ExpertConfig:
    return tiny_config(**{"state_dim": 4, "action_dim": 4, "window": 6, **kw})


def test_policy_attributes_and_step_shapes():
    p = ExpertPolicy.build_untrained(tiny(), control_rate_hz=50.0, model_id="m",
                                     joint_names=["a", "b", "c", "d"])
    assert (p.state_dim, p.action_dim, p.prefix_dim) == (4, 4, 6)
    assert p.control_rate_hz == 50.0 and p.model_id == "m" and p.joint_names == ["a", "b", "c", "d"]
    assert p.cache_capacity == 6 and p.cache_fill == 0
    p.refresh_prefix(np.ones((3, 6), np.float32), capture_step=0)
    for t in range(9):
        out = p.step(np.zeros(4), t, lookahead=3)
        assert out.shape == (3, 4) and out.dtype == np.float64 and np.isfinite(out).all()
    assert p.cache_fill == 6 and p.prefix_capture_step == 0
    p.reset()
    assert p.cache_fill == 0 and p.prefix_capture_step is None


def test_lookahead_rows_do_not_change_committed_memory():
    cfg = tiny(use_prev_action=True, delta_actions=True)
    a = ExpertPolicy.build_untrained(cfg, seed=3)
    b = ExpertPolicy.build_untrained(cfg, seed=3)
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((4, 6)).astype(np.float32)
    for p in (a, b):
        p.refresh_prefix(tokens, 2)
    for t in range(10):
        s = rng.standard_normal(4)
        ra = a.step(s, t, lookahead=5)
        rb = b.step(s, t, lookahead=1)
        np.testing.assert_allclose(ra[0], rb[0], atol=1e-6)


def test_lookahead_row_1_equals_committing_the_predicted_action_as_state():
    cfg = tiny()
    a = ExpertPolicy.build_untrained(cfg, seed=5)
    b = ExpertPolicy.build_untrained(cfg, seed=5)
    s = np.array([0.1, -0.2, 0.3, 0.0])
    ra = a.step(s, 0, lookahead=2)
    b.step(s, 0)
    rb = b.step(ra[0], 1)
    np.testing.assert_allclose(ra[1], rb[0], atol=1e-5)


def test_normalisation_lives_outside_the_network():
    from arvla_action_expert.normalize import Normalizer

    cfg = tiny(delta_actions=True)
    torch.manual_seed(0)
    from arvla_action_expert.model import ARExpert

    model = ARExpert(cfg)
    scale = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    p1 = ExpertPolicy(model, state_norm=Normalizer.identity(4), target_norm=Normalizer.identity(4),
                      control_rate_hz=20)
    p2 = ExpertPolicy(model, state_norm=Normalizer(np.zeros(4, np.float32), scale),
                      target_norm=Normalizer(np.full(4, 0.5, np.float32), scale),
                      control_rate_hz=20)
    s = np.array([0.3, -0.1, 0.2, 0.4])
    a1 = p1.step(s, 0)[0]
    a2 = p2.step(s * scale, 0)[0]
    # same normalised input -> same normalised target; real units differ by the stats
    np.testing.assert_allclose(a2 - s * scale, (a1 - s) * scale + 0.5, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda p: p.step(np.zeros(3), 0), r"state must have shape \(4,\), got \(3,\)"),
    (lambda p: p.step(np.zeros((1, 4)), 0), r"state must have shape \(4,\), got \(1, 4\)"),
    (lambda p: p.step(np.full(4, np.nan), 0), "NaN"),
    (lambda p: p.step(np.zeros(4), 0, lookahead=0), r"lookahead must be in \[1, 33\], got 0"),
    (lambda p: p.refresh_prefix(np.zeros((3, 5)), 0), r"\(N, 6\) with 1 <= N <= 5, got \(3, 5\)"),
    (lambda p: p.refresh_prefix(np.zeros((6, 6)), 0), r"got \(6, 6\)"),
    (lambda p: p.refresh_prefix(np.zeros(6), 0), r"got \(6,\)"),
])
def test_wrong_input_shapes_raise_value_error_with_shapes(call, match):
    p = ExpertPolicy.build_untrained(tiny())
    with pytest.raises(ValueError, match=match):
        call(p)
    # the policy is still usable afterwards
    assert p.step(np.zeros(4), 0).shape == (1, 4)


def test_lookahead_needs_matching_state_and_action_dims():
    p = ExpertPolicy.build_untrained(tiny(state_dim=5))
    assert p.step(np.zeros(5), 0).shape == (1, 4)
    with pytest.raises(ValueError, match=r"state_dim \(5\) == action_dim \(4\)"):
        p.step(np.zeros(5), 1, lookahead=2)


def test_step_order_violation_names_the_steps():
    from arvla_action_expert.cache import CacheError

    p = ExpertPolicy.build_untrained(tiny())
    p.step(np.zeros(4), 7)
    with pytest.raises(CacheError, match="step 7 does not follow the last committed step 7"):
        p.step(np.zeros(4), 7)
    assert p.step(np.zeros(4), 8).shape == (1, 4)


def test_int8_policy_stays_close_to_fp32():
    """Dynamic int8 weights (the fast CPU path) keep actions within a small error of fp32."""
    cfg = tiny(n_embd=64, ffn=128, head="regression")
    a = ExpertPolicy.build_untrained(cfg, seed=1)
    b = ExpertPolicy.build_untrained(cfg, seed=1)
    b.quantize()
    rng = np.random.default_rng(0)
    tok = rng.standard_normal((4, 6)).astype(np.float32)
    for p in (a, b):
        p.refresh_prefix(tok, 0)
    diffs, scale = [], []
    for t in range(15):
        s = rng.standard_normal(4)
        ra, rb = a.step(s, t, lookahead=2), b.step(s, t, lookahead=2)
        diffs.append(np.abs(ra - rb).max())
        scale.append(np.abs(ra).max())
    assert max(diffs) < 0.05 * max(scale), (max(diffs), max(scale))

"""The ONNX Runtime step (fast CPU path) computes the same step as the torch model."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_action_expert.model import ExpertConfig
from arvla_action_expert.policy import ExpertPolicy
from core_helpers import tiny_config

pytest.importorskip("onnxruntime")


def tiny(**kw) -> ExpertConfig:
    return tiny_config(**{"action_dim": 3, "window": 6, **kw})


def _run_pair(cfg, int8, steps=20):
    a = ExpertPolicy.build_untrained(cfg, seed=1)
    b = ExpertPolicy.build_untrained(cfg, seed=1)
    b.use_onnx(int8=int8)
    rng = np.random.default_rng(0)
    tok = rng.standard_normal((4, cfg.prefix_dim)).astype(np.float32)
    for p in (a, b):
        p.refresh_prefix(tok, 0)
    diffs, scale = [], []
    for t in range(steps):  # > 3 windows: ring wrap-around; refreshes and a step-index jump
        if t in (7, 13):
            for p in (a, b):
                p.refresh_prefix(tok * (t / 10), t - 2)
        step = t if t < 15 else t + 3
        s = rng.standard_normal(cfg.state_dim)
        ra, rb = a.step(s, step, lookahead=3), b.step(s, step, lookahead=3)
        diffs.append(np.abs(ra - rb).max())
        scale.append(np.abs(ra).max())
    return max(diffs), max(scale)


@pytest.mark.parametrize("kw", [dict(), dict(use_prev_action=True, delta_actions=True),
                                dict(head="binned", n_bins=16), dict(predict_steps=4),
                                dict(head="binned", n_bins=16, predict_steps=3),
                                dict(rope_dims=4)])
def test_onnx_fp32_step_matches_torch(kw):
    diff, _ = _run_pair(tiny(**kw), int8=False)
    assert diff < 1e-4, diff


def test_onnx_int8_step_stays_close():
    diff, scale = _run_pair(tiny(n_embd=64, ffn=128), int8=True)
    assert diff < 0.05 * scale, (diff, scale)

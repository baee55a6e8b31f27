"""The action heads: losses and decoding, including multi-token prediction (predict_steps)."""

from __future__ import annotations

import pytest
import torch

from arvla_base.config import ConfigError
from arvla_action_expert.model import ARExpert
from core_helpers import tiny_config as tiny


def test_multi_token_loss_scores_every_valid_token_and_future_pair():
    torch.manual_seed(0)
    K, B, T, A = 3, 2, 6, 2
    model = ARExpert(tiny(predict_steps=K))
    out = torch.randn(B, T, K, A)
    target = torch.randn(B, T, A)
    weight = torch.ones(B, T)
    weight[0, :2] = 0   # padding at the start of sample 0
    weight[1, 5] = 0    # and at the end of sample 1
    num, den = 0.0, 0
    for b in range(B):
        for t in range(T):
            for k in range(K):
                if t + k < T and weight[b, t] and weight[b, t + k]:
                    num += float((out[b, t, k] - target[b, t + k]).abs().mean())
                    den += 1
    got = model.loss(out, target, weight)
    assert got.item() == pytest.approx(num / den, rel=1e-5)


def test_single_step_loss_is_the_weighted_token_mean():
    torch.manual_seed(1)
    model = ARExpert(tiny())
    out, target = torch.randn(2, 5, 2), torch.randn(2, 5, 2)
    weight = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.float32)
    per = (out - target).abs().mean(-1)
    assert model.loss(out, target, weight).item() == pytest.approx(
        float((per * weight).sum() / weight.sum()), rel=1e-6)
    assert model.loss(out, target).item() == pytest.approx(float(per.mean()), rel=1e-6)


@pytest.mark.parametrize("head", ["regression", "binned"])
def test_decode_reads_only_the_tokens_own_step(head):
    c = tiny(head=head, n_bins=5, predict_steps=4)
    model = ARExpert(c)
    h = torch.randn(2, 3, c.n_embd)
    out = model.head_out(h)
    assert out.shape == (2, 3, *model.out_shape)
    assert model.out_shape == ((4, 2, 5) if head == "binned" else (4, 2))
    first = model.decode(out)
    changed = out.clone()
    changed[:, :, 1:] = torch.randn_like(changed[:, :, 1:])  # other predicted steps only
    assert first.shape == (2, 3, 2)
    torch.testing.assert_close(model.decode(changed), first)


def test_predict_steps_must_be_positive():
    with pytest.raises(ConfigError, match="predict_steps"):
        tiny(predict_steps=0)


@pytest.mark.parametrize("head", ["regression", "binned"])
def test_ensemble_steps_executes_the_mean_of_the_recent_tokens_predictions(head):
    """ensemble_steps E: the target executed at step t is the mean of what tokens t-E+1 .. t
    predicted for t (token s's k-th prediction is for s + k), checked against one whole-sequence
    forward; E = 1 is the token's own prediction."""
    import numpy as np

    from arvla_action_expert.normalize import Normalizer
    from arvla_action_expert.policy import ExpertPolicy

    torch.manual_seed(3)
    K, E, T = 4, 3, 9
    c = tiny(head=head, n_bins=7, predict_steps=K, state_dim=2, delta_actions=True)
    model = ARExpert(c)
    policy = ExpertPolicy(model, state_norm=Normalizer.identity(2), target_norm=Normalizer.identity(2),
                          control_rate_hz=20.0)
    with pytest.raises(ValueError, match="ensemble_steps must be in"):
        policy.ensemble_steps = K + 1
    states = np.random.default_rng(0).normal(size=(T, 2))
    with torch.no_grad():
        out, _ = model(torch.tensor(states, dtype=torch.float32)[None], torch.arange(T)[None])
        plans = model.decode(out, all_steps=True)[0].numpy()  # (T, K, A)
    for e in (1, E):
        policy.reset()
        policy.ensemble_steps = e
        got = np.stack([policy.step(states[t], t)[0] for t in range(T)])
        want = np.stack([states[t] + np.mean([plans[s, t - s] for s in range(max(0, t - e + 1), t + 1)],
                                             axis=0) for t in range(T)])
        np.testing.assert_allclose(got, want, atol=1e-5)
    # a reset forgets the plans: step 0 again is the token's own prediction
    policy.reset()
    np.testing.assert_allclose(policy.step(states[0], 0)[0], states[0] + plans[0, 0], atol=1e-5)
    # ensemble_m: ACT's weights exp(-m * i), i = 0 the oldest prediction (either sign)
    for m in (0.7, -0.4):
        policy.reset()
        policy.ensemble_steps, policy.ensemble_m = E, m
        got = np.stack([policy.step(states[t], t)[0] for t in range(T)])
        for t in range(T):
            rows = np.array([plans[s, t - s] for s in range(max(0, t - E + 1), t + 1)])  # oldest first
            w = np.exp(-m * np.arange(len(rows)))
            np.testing.assert_allclose(got[t], states[t] + w @ rows / w.sum(), atol=1e-5)
    with pytest.raises(ValueError, match="ensemble_m must be a finite number"):
        policy.ensemble_m = float("nan")

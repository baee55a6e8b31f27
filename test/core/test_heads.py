"""The action heads: losses and decoding, including multi-token prediction (predict_steps)."""

from __future__ import annotations

import pytest
import torch

from arvla.config import ConfigError
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

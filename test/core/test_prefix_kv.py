"""ExpertConfig.prefix_kv: which prefix features each decoder layer attends to."""

from __future__ import annotations

import pytest
import torch

from arvla_action_expert.model import ARExpert, PrefixBatch
from arvla_base.config import ConfigError
from core_helpers import tiny_config


def _out(model: ARExpert, g: torch.Generator) -> torch.Tensor:
    c = model.config
    T = 6
    states = torch.randn(1, T, c.state_dim, generator=g)
    prefix = PrefixBatch(torch.randn(1, 1, 3, c.prefix_dim, generator=g), torch.tensor([[0]]),
                         torch.zeros(1, T, dtype=torch.int64))
    with torch.no_grad():
        return model(states, torch.arange(T).view(1, T), prefix=prefix)[0]


@pytest.mark.parametrize("prefix_kv, reads_last_block", [("layerwise", False), ("final", True)])
def test_which_prefix_features_the_decoder_reads(prefix_kv, reads_last_block):
    torch.manual_seed(0)
    model = ARExpert(tiny_config(n_layer=2, head="regression", prefix_kv=prefix_kv)).eval()
    before = _out(model, torch.Generator().manual_seed(1))
    with torch.no_grad():   # the last prefix block's MLP: what only its output carries
        for p in model.prefix_blocks[-1].mlp.parameters():
            p.add_(torch.randn_like(p))
    after = _out(model, torch.Generator().manual_seed(1))
    assert (not torch.allclose(before, after)) == reads_last_block


def test_prefix_kv_must_be_known():
    with pytest.raises(ConfigError, match="prefix_kv"):
        tiny_config(prefix_kv="middle")


def test_partial_rope_rotates_only_its_dims_and_keeps_relative_positions():
    from arvla_action_expert.model import apply_rope, rope_cos_sin

    head_dim, r = 8, 4   # pairs (i, i + 4): the first two rotate, the last two do not
    pos = torch.tensor([3, 50])
    cos, sin = rope_cos_sin(pos, head_dim, 10000.0, rope_dims=r)
    x = torch.randn(2, head_dim)
    y = apply_rope(x, cos, sin)
    content = [2, 3, 6, 7]
    torch.testing.assert_close(y[:, content], x[:, content], rtol=0, atol=0)
    assert not torch.allclose(y[:, [0, 4]], x[:, [0, 4]])
    # q.k depends on the position difference only
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(pq, pk):
        cq, sq = rope_cos_sin(torch.tensor([pq]), head_dim, 10000.0, rope_dims=r)
        ck, sk = rope_cos_sin(torch.tensor([pk]), head_dim, 10000.0, rope_dims=r)
        return float(apply_rope(q[None], cq, sq) @ apply_rope(k[None], ck, sk)[0])
    assert score(10, 7) == pytest.approx(score(1010, 1007), abs=1e-5)


@pytest.mark.parametrize("rope_dims", [3, 10, -2])
def test_rope_dims_must_fit_the_head(rope_dims):
    with pytest.raises(ConfigError, match="rope_dims"):
        tiny_config(n_embd=32, n_head=4, rope_dims=rope_dims)   # head_dim 8

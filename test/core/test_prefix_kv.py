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

"""Helpers shared by the core tests."""

from __future__ import annotations

from arvla_action_expert.model import ExpertConfig


def tiny_config(**kw) -> ExpertConfig:
    """A small, fast ExpertConfig; keywords override these defaults."""
    base = dict(state_dim=3, action_dim=2, prefix_dim=6, max_prefix_tokens=5, n_embd=32,
                n_layer=2, n_head=4, ffn=48, window=7, head="regression")
    base.update(kw)
    return ExpertConfig(**base)

"""arvla_action_expert: the autoregressive action expert (ROS-free core + a thin node).

Public names are re-exported lazily, so ``import arvla_action_expert.reanchor`` (pure rules)
does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExpertConfig": "model", "ARExpert": "model", "PrefixBatch": "model",
    "HybridKVCache": "cache", "CacheError": "cache",
    "ExpertPolicy": "policy",
    "CheckpointError": "checkpoint", "CheckpointMeta": "checkpoint",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "PrefixDecision": "reanchor", "decide_prefix": "reanchor", "sample_staleness": "reanchor",
    "staleness": "reanchor", "time_to_step": "reanchor",
    "Normalizer": "normalize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'arvla_action_expert' has no attribute {name!r}")
    return getattr(importlib.import_module(f"arvla_action_expert.{_EXPORTS[name]}"), name)

"""``StepPolicy``: the interface the expert node (and offline replay, and evaluation) runs a
policy through, whichever it is: the AR expert (``arvla_action_expert.ExpertPolicy``) or a
baseline (``arvla_baselines.chunk.ChunkPolicy``). See docs/CONTRACTS.md.

What a policy can do beyond the interface is said by its ``capabilities``, never found out by
probing attributes: the node reads them to accept or refuse its parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

from arvla_base.config import ConfigError

__all__ = ["PolicyCapabilities", "StepPolicy", "configure_ensembling"]


@dataclasses.dataclass(frozen=True)
class PolicyCapabilities:
    """What a policy can do beyond ``StepPolicy``'s methods."""

    # Multi-token predictions the node may average over the last ``ensemble_steps`` tokens: the
    # policy then has writable ``ensemble_steps`` and ``ensemble_m`` attributes (ValueError on a
    # bad value).
    ensembles: bool = False
    # A memory across steps (the expert's KV cache): ``reset`` forgets something that matters.
    has_memory: bool = False


@runtime_checkable
class StepPolicy(Protocol):
    """One action per control step, from the joint state and the newest vision-language prefix."""

    config: Any                    # the model's config dataclass (has max_prefix_tokens)
    capabilities: PolicyCapabilities
    state_dim: int
    action_dim: int
    prefix_dim: int
    control_rate_hz: float         # rate of the training data = the duration of one step
    model_id: str                  # perception model id it was trained with ("" = any)
    joint_names: list[str]         # order of the state/action dims ([] = unknown)

    @property
    def cache_fill(self) -> int: ...          # memory fill (0 for a policy without memory)

    @property
    def cache_capacity(self) -> int: ...      # memory window

    def reset(self) -> None:
        """Forget everything: memory, prefix, plans."""

    def refresh_prefix(self, tokens: np.ndarray, capture_step: int) -> None:
        """Use ``tokens`` (N, prefix_dim) from now on, captured at step ``capture_step``."""

    def clear_prefix(self) -> None:
        """Act without a prefix from now on (action-only)."""

    def step(self, state: np.ndarray, step_index: int, lookahead: int = 1) -> np.ndarray:
        """(lookahead, action_dim) absolute targets in real units; row 0 is committed."""


def configure_ensembling(policy: Any, ensemble_steps: int, ensemble_m: float) -> None:
    """The expert node's ``ensemble_steps`` / ``ensemble_m`` parameters given to ``policy``: set
    on a policy that ensembles (``capabilities.ensembles``), refused (above 1 / non-zero) for one
    that does not; a bad value is a ConfigError naming the parameter. The node and the in-process
    evaluation both call this, so they accept and refuse the same."""
    if not policy.capabilities.ensembles:  # e.g. the chunked baseline
        refused = ("ensemble_m", ensemble_m) if ensemble_m != 0.0 else (
            ("ensemble_steps", ensemble_steps) if ensemble_steps > 1 else None)
        if refused is not None:
            raise ConfigError(f"{refused[0]}: {refused[1]}, but a {type(policy).__name__} has no "
                              "multi-token predictions to ensemble")
        return
    for key, value in (("ensemble_steps", ensemble_steps), ("ensemble_m", ensemble_m)):
        try:
            setattr(policy, key, value)
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from err

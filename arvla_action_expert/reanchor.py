"""Dynamic Temporal Re-anchoring: capture stamps -> step indices -> staleness, and what to do.

The expert runs on a clock of control steps (``dt = 1 / control_rate_hz``). A vision-language
prefix is computed from an image captured earlier, so when it reaches the expert it is already
``staleness = current_step - capture_step`` steps old. The model is told this staleness through
RoPE (prefix keys are rotated at ``capture_step``, step queries at ``current_step``), so the rules
here only have to turn stamps into step indices and decide whether a prefix is usable at all.

The rules are pure functions (no torch) so that the node, offline replay and tests share them;
``sample_staleness`` is the training-time counterpart (delays drawn while teacher forcing).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch only for the training-time sampler
    import torch

__all__ = ["PrefixDecision", "decide_prefix", "sample_staleness", "staleness", "time_to_step"]


def time_to_step(t_ns: int, t0_ns: int, period_ns: int) -> int:
    """Step index of time ``t_ns`` on the control clock that started at ``t0_ns``.

    Rounds to the nearest step (a camera stamp rarely falls exactly on a tick). Integer arithmetic
    throughout, so stamps hours into an episode do not lose precision as floats would.
    """
    if period_ns <= 0:
        raise ValueError(f"period_ns must be > 0, got {period_ns}")
    delta = int(t_ns) - int(t0_ns)
    # round half away from zero, exactly, in integers
    q, r = divmod(abs(delta), int(period_ns))
    if 2 * r >= period_ns:
        q += 1
    return q if delta >= 0 else -q


def staleness(current_step: int, capture_step: int) -> int:
    """How many steps old a prefix captured at ``capture_step`` is at ``current_step``.

    Negative means the prefix claims to come from the future (clock skew or a bad stamp).
    """
    return int(current_step) - int(capture_step)


class PrefixDecision(enum.Enum):
    """What the expert does with the newest prefix at a tick."""

    USE = "use"                      # attend to it (staleness encoded by RoPE)
    REJECT_FUTURE = "reject_future"  # stamp lies in the future beyond tolerance: drop the prefix
    HOLD_STALE = "hold_stale"        # too old to trust: hold position until a fresh one arrives
    WAIT_MISSING = "wait_missing"    # no prefix yet and action-only is not allowed: wait
    ACTION_ONLY = "action_only"      # no prefix yet, run on proprio history alone (stage-1 skill)


def decide_prefix(current_step: int, capture_step: int | None, *, max_staleness: int,
                  allow_action_only: bool, future_tolerance: int = 0) -> PrefixDecision:
    """Decide whether the prefix captured at ``capture_step`` may drive the action at ``current_step``.

    - no prefix (``capture_step is None``): ACTION_ONLY if allowed, else WAIT_MISSING;
    - ``staleness < -future_tolerance``: REJECT_FUTURE (a small negative staleness within the
      tolerance is accepted: it is a rounding / clock-jitter artefact, not a real future frame);
    - ``staleness > max_staleness``: HOLD_STALE (the model was never trained that far out);
    - otherwise USE.
    """
    if max_staleness < 0:
        raise ValueError(f"max_staleness must be >= 0, got {max_staleness}")
    if future_tolerance < 0:
        raise ValueError(f"future_tolerance must be >= 0, got {future_tolerance}")
    if capture_step is None:
        return PrefixDecision.ACTION_ONLY if allow_action_only else PrefixDecision.WAIT_MISSING
    s = staleness(current_step, capture_step)
    if s < -future_tolerance:
        return PrefixDecision.REJECT_FUTURE
    if s > max_staleness:
        return PrefixDecision.HOLD_STALE
    return PrefixDecision.USE


def sample_staleness(generator: "torch.Generator | None", shape: Sequence[int] | int,
                     max_staleness: int) -> "torch.Tensor":
    """Training-time delays: integers uniform in ``[0, max_staleness]`` (int64 tensor of ``shape``).

    Uniform rather than matched to a measured latency distribution: the deployed perception rate
    is unknown at training time, and every staleness the node may accept (``decide_prefix`` USE)
    must have been seen in training.
    """
    import torch

    if max_staleness < 0:
        raise ValueError(f"max_staleness must be >= 0, got {max_staleness}")
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randint(0, max_staleness + 1, size, generator=generator, dtype=torch.int64)

"""Hybrid KV cache: a single prefix slot + a rolling FIFO of the last W step tokens.

Layout per decoder layer (one preallocated tensor, so attention never concatenates):

    slot:  [ 0 .. P-1 | P .. P+W-1        | P+W .. P+W+S-1       ]
           [ prefix   | ring of W steps   | S speculative steps  ]

- Prefix slot: K/V of the prefix encoder's layer i, computed once per refresh, keys already
  rotated at the frame's capture step. A refresh overwrites it; nothing else changes.
- Ring: committed step tokens, oldest evicted first. Keys are rotated once, at their own
  absolute step index, and never touched again; because RoPE scores depend only on index
  differences, this equals recomputing the window (the property test/core checks).
- Scratch: up to S speculative lookahead tokens; visible only until ``end_lookahead``.

Which slots a query sees is a boolean mask rebuilt at each step from the step index stored per
slot: slot s is visible to step t iff ``t - W < step[s] <= t``. That is the same rule as
``ARExpert.window_mask`` for whole sequences, so cached and uncached paths agree exactly, also
when step indices jump (late ticks).

The static-shape step (``ARExpert.step_static``, ``policy.StaticStep``, what ``inference:
cuda_graph`` captures) uses the same tensors through a split of that bookkeeping: the device
half (``mark_step``, ``clear_scratch``) takes the step index and slot as device tensors, the
host half (``check_commit``, ``commit_marked``, ``discard_marked``) keeps the integers.

Nothing non-finite ever enters the cache: a hidden slot still takes part in the attention
matmul with weight 0, and 0 x NaN = NaN, so one poisoned slot would spoil every later step
even after a reset. ``set_prefix`` refuses non-finite keys/values, ``end_step`` refuses to
commit a non-finite token, and ``reset`` / ``clear_prefix`` / ``abort_step`` zero what they free.
"""

from __future__ import annotations

import torch

_EMPTY = -(2 ** 62)  # step index of an empty slot: never inside any window


class CacheError(RuntimeError):
    """A cache precondition failed (wrong step order, over-long prefix, lookahead overflow)."""


class HybridKVCache:
    """Preallocated prefix slot + ring buffer + speculative scratch for one sequence (batch 1)."""

    def __init__(self, n_layer: int, n_head: int, head_dim: int, window: int,
                 max_prefix_tokens: int, max_lookahead: int = 16, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        if window < 1 or max_prefix_tokens < 1 or max_lookahead < 0:
            raise CacheError(f"window {window}, max_prefix_tokens {max_prefix_tokens} must be "
                             f">= 1 and max_lookahead {max_lookahead} >= 0")
        self.window = window
        self.n_prefix = max_prefix_tokens
        self.max_lookahead = max_lookahead
        slots = max_prefix_tokens + window + max_lookahead
        self.k = torch.zeros(n_layer, 1, n_head, slots, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        # step index per ring/scratch slot, and the visibility mask (1, 1, 1, slots) for SDPA
        self.slot_step = torch.full((window + max_lookahead,), _EMPTY, dtype=torch.int64,
                                    device=device)
        self.mask = torch.zeros(1, 1, 1, slots, dtype=torch.bool, device=device)
        self.bias = torch.zeros(1, 1, 1, slots, dtype=dtype, device=device)  # 0 / -inf form
        # which prefix slots hold tokens, on the device: the static step builds its mask from it
        self.prefix_mask = torch.zeros(max_prefix_tokens, dtype=torch.bool, device=device)
        self.reset()

    # ---- state --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every step and the prefix (new episode); the tensors are zeroed in place (views
        such as the ONNX backend's stay valid)."""
        self.k.zero_()
        self.v.zero_()
        self.slot_step.fill_(_EMPTY)
        self.mask.fill_(False)
        self.prefix_mask.fill_(False)
        self.prefix_len = 0
        self.capture_step: int | None = None
        self.head = 0                    # next ring slot to overwrite (the oldest)
        self.fill = 0                    # committed tokens held, <= window
        self.last_step: int | None = None  # last committed step index
        self._write_slot: int | None = None
        self._lookahead = 0

    @property
    def capacity(self) -> int:
        return self.window

    @property
    def write_slot(self) -> int:
        """Slot (index into the slot axis of k/v) reserved by ``begin_step``."""
        if self._write_slot is None:
            raise CacheError("no step in progress: call begin_step first")
        return self._write_slot

    def set_prefix(self, kv: list[tuple[torch.Tensor, torch.Tensor]], capture_step: int) -> None:
        """Replace the prefix slot with per-layer (k rotated at capture_step, v), (1, H, N, D).

        Non-finite keys/values (a prefix whose values overflow the encoder, e.g. tokens of
        1e30) are refused before anything is written: the slot keeps the prefix it had.
        """
        n = kv[0][0].shape[2]
        if len(kv) != self.k.shape[0]:
            raise CacheError(f"prefix has {len(kv)} layers, cache has {self.k.shape[0]}")
        if n > self.n_prefix:
            raise CacheError(f"prefix has {n} tokens, the cache slot holds {self.n_prefix}")
        bad = sum(int((~torch.isfinite(k)).sum()) + int((~torch.isfinite(v)).sum()) for k, v in kv)
        if bad:
            raise CacheError(f"prefix keys/values have {bad} NaN/inf values (the prefix overflows "
                             "the encoder); not installed")
        for layer, (k, v) in enumerate(kv):
            self.k[layer, :, :, :n] = k
            self.v[layer, :, :, :n] = v
        self.k[:, :, :, n: self.n_prefix] = 0.0  # a shorter prefix leaves no stale tokens behind
        self.v[:, :, :, n: self.n_prefix] = 0.0
        self.prefix_mask[:n] = True
        self.prefix_mask[n:] = False
        self.prefix_len = n
        self.capture_step = int(capture_step)

    def clear_prefix(self) -> None:
        self.k[:, :, :, : self.n_prefix] = 0.0
        self.v[:, :, :, : self.n_prefix] = 0.0
        self.prefix_mask.fill_(False)
        self.prefix_len = 0
        self.capture_step = None

    # ---- one step -----------------------------------------------------------------------------

    def begin_step(self, step_index: int, *, commit: bool) -> None:
        """Reserve the slot for the token of ``step_index`` and build the visibility mask.

        Committed steps go into the ring (evicting the oldest); speculative ones into scratch.
        Step indices must increase: the ring's FIFO order is the step order.
        """
        if self._write_slot is not None:
            raise CacheError("begin_step called twice without end_step")
        step_index = int(step_index)
        if commit:
            if self._lookahead:
                raise CacheError(f"{self._lookahead} speculative steps still pending: call "
                                 "end_lookahead() before committing a step")
            if self.last_step is not None and step_index <= self.last_step:
                raise CacheError(f"step {step_index} does not follow the last committed step "
                                 f"{self.last_step}; call reset() to start a new episode")
            slot = self.head
        else:
            if self._lookahead >= self.max_lookahead:
                raise CacheError(f"lookahead of {self._lookahead + 1} steps exceeds the "
                                 f"{self.max_lookahead} scratch slots")
            newest = self.slot_step.max().item()
            if step_index <= newest:
                raise CacheError(f"speculative step {step_index} must follow step {newest}")
            slot = self.window + self._lookahead
        self.slot_step[slot] = step_index
        self.mask[..., : self.n_prefix] = False
        self.mask[..., : self.prefix_len] = True
        visible = (self.slot_step > step_index - self.window) & (self.slot_step <= step_index)
        self.mask[0, 0, 0, self.n_prefix:] = visible
        self.bias.zero_().masked_fill_(~self.mask, float("-inf"))
        self._write_slot = self.n_prefix + slot
        self._commit = commit

    def keys_values(self, layer: int, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store the new token's (1, H, 1, D) k/v of ``layer``; return all keys, values and the
        additive mask (0 visible, -inf hidden)."""
        if self._write_slot is None:
            raise CacheError("keys_values outside begin_step/end_step")
        if k.shape[2] != 1:
            raise CacheError(f"the cache takes one token per step, got {k.shape[2]}")
        s = self._write_slot
        self.k[layer, :, :, s: s + 1] = k
        self.v[layer, :, :, s: s + 1] = v
        return self.k[layer], self.v[layer], self.bias

    def end_step(self) -> None:
        """Commit (or keep as speculative) the token written since ``begin_step``. A token whose
        keys/values are not finite is aborted instead (CacheError): it would poison the ring."""
        if self._write_slot is None:
            raise CacheError("end_step without begin_step")
        s = self._write_slot
        if not (torch.isfinite(self.k[:, :, :, s]).all() and torch.isfinite(self.v[:, :, :, s]).all()):
            self.abort_step()
            raise CacheError("the step token's keys/values are not finite; step not stored")
        if self._commit:
            self.last_step = int(self.slot_step[self.head])
            self.head = (self.head + 1) % self.window
            self.fill = min(self.fill + 1, self.window)
        else:
            self._lookahead += 1
        self._write_slot = None

    def abort_step(self) -> None:
        """Undo a begun step whose forward failed, so the cache stays usable (its slot zeroed)."""
        if self._write_slot is not None:
            s = self._write_slot
            self.k[:, :, :, s] = 0.0
            self.v[:, :, :, s] = 0.0
            self.slot_step[s - self.n_prefix] = _EMPTY
            self._write_slot = None

    def end_lookahead(self) -> None:
        """Drop the speculative tokens; the committed memory is as before the lookahead."""
        self.slot_step[self.window:] = _EMPTY
        self._lookahead = 0

    # ---- the static-shape step (ARExpert.step_static, policy.StaticStep) -----------------------
    # The same bookkeeping split in two: device work that takes the step index and the slot as
    # device tensors (fixed shapes, no host sync: capturable in a CUDA graph), and host work on
    # plain ints before / after it. Scratch slots follow the ring: speculative row j (1..) of a
    # tick takes ring-relative slot window + j - 1.

    def check_commit(self, step_index: int) -> int:
        """``begin_step(commit=True)``'s preconditions on the host only; the ring slot (0..W-1)
        the token of ``step_index`` will take."""
        if self._write_slot is not None or self._lookahead:
            raise CacheError("a begun step or speculative steps are pending: the static step "
                             "needs a cache between ticks")
        if self.last_step is not None and int(step_index) <= self.last_step:
            raise CacheError(f"step {int(step_index)} does not follow the last committed step "
                             f"{self.last_step}; call reset() to start a new episode")
        return self.head

    def mark_step(self, ring_slot: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Device half of ``begin_step``: ``slot_step[ring_slot] = step`` (both (1,) int64 device
        tensors) and the additive mask of a query at ``step``, rebuilt in place; returns it."""
        self.slot_step.index_copy_(0, ring_slot, step)
        visible = (self.slot_step > step - self.window) & (self.slot_step <= step)
        self.mask[0, 0, 0, : self.n_prefix] = self.prefix_mask
        self.mask[0, 0, 0, self.n_prefix:] = visible
        return self.bias.zero_().masked_fill_(~self.mask, float("-inf"))

    def clear_scratch(self) -> None:
        """Device half of ``end_lookahead``: hide the speculative slots (no host bookkeeping)."""
        self.slot_step[self.window:] = _EMPTY

    def commit_marked(self, step_index: int) -> None:
        """Host half of ``end_step`` for the token a static step wrote into the head slot."""
        self.last_step = int(step_index)
        self.head = (self.head + 1) % self.window
        self.fill = min(self.fill + 1, self.window)

    def discard_marked(self, ring_slot: int | None) -> None:
        """After a static tick whose token was not finite: zero ring slot ``ring_slot`` (the
        committed token, when it was the bad one; None = keep it) and every scratch slot, and
        hide them, so nothing non-finite stays in the memory."""
        if ring_slot is not None:
            s = self.n_prefix + ring_slot
            self.k[:, :, :, s] = 0.0
            self.v[:, :, :, s] = 0.0
            self.slot_step[ring_slot] = _EMPTY
        self.k[:, :, :, self.n_prefix + self.window:] = 0.0
        self.v[:, :, :, self.n_prefix + self.window:] = 0.0
        self.clear_scratch()

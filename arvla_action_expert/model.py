"""The AR action expert: one causal token per control step, attending to a refreshed VL prefix.

Read top to bottom: RoPE -> attention -> MLP -> blocks -> config -> model.

- A bidirectional *prefix encoder* turns backbone tokens (N, prefix_dim) into per-layer keys and
  values. Decoder layer i attends to prefix layer i's K/V inside its own causal attention
  (pi0-style: no separate cross-attention block, the prefix just adds keys to the softmax).
  ``prefix_kv: final`` instead projects every layer's K/V from the encoder's output after all
  its blocks (encoder-decoder style; the cache holds the same per-layer K/V either way).
- The *decoder* has one token per control step: a linear projection of the (normalised) proprio
  state, optionally plus the previous action target. Every step token attends to the last W step
  tokens (itself included) and, if it has one, to its prefix.
- Positions are RoPE at ABSOLUTE control-step indices. A prefix's keys are rotated at the step
  its frame was captured, so the query-key angle between a step token and the prefix encodes
  exactly ``current_step - capture_step``: the prefix's staleness (Dynamic Temporal
  Re-anchoring). Cached keys are never re-rotated, which is what makes the KV cache exact.
- Heads: per-dimension binned actions (k-means bin centres, cross-entropy, decoded by centre)
  or continuous regression (L1, or L2 / Huber: ``regression_loss``); optionally an ACT-style
  auxiliary chunk head on the prefix.
  With ``predict_steps`` K > 1 every step token also predicts the K-1 targets after its own
  (multi-token prediction, trained only): only the first is ever executed, the others make the
  token carry a plan instead of "keep doing what the history did".

Training (whole sequences with masks, ``forward``) and inference (one step against a
``HybridKVCache``, ``step``) go through the same attention code: the only difference is where the
keys/values and the mask come from.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from arvla_base.config import ConfigError, require

if TYPE_CHECKING:
    from arvla_action_expert.cache import HybridKVCache


# --------------------------------------------------------------------------------------------
# RoPE at absolute step indices


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float,
                 dtype: torch.dtype = torch.float32, rope_dims: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer step indices ``positions`` (any shape) -> (*shape, head_dim/2).
    ``rope_dims``: see ``_inv_freq``.

    Angles are formed in float64: step indices grow without bound over a long run (50 Hz for an
    hour is 180k steps), and ``pos * freq`` in float32 would lose ~1e-2 rad there, breaking the
    "only relative positions matter" property the cache and re-anchoring rely on.
    """
    inv_freq = _inv_freq(head_dim, base, str(positions.device), rope_dims)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq  # (*shape, half)
    return angles.cos().to(dtype), angles.sin().to(dtype)


@functools.lru_cache(maxsize=16)
def _inv_freq(head_dim: int, base: float, device: str, rope_dims: int = 0) -> torch.Tensor:
    """base^(-2i/r) for the first r/2 of the head_dim/2 pairs, 0 for the rest (they are not
    rotated: pure content), r = ``rope_dims`` or head_dim (all rotated); float64, cached because
    a cached step would otherwise spend ~0.1 ms on it."""
    half, r = head_dim // 2, (rope_dims or head_dim) // 2
    inv = torch.zeros(half, dtype=torch.float64, device=device)
    inv[:r] = base ** (-torch.arange(r, dtype=torch.float64, device=device) / r)
    return inv


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., T, head_dim) by cos/sin (..., T, head_dim/2), half-split convention."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# --------------------------------------------------------------------------------------------
# Building blocks


class Attention(nn.Module):
    """Multi-head attention whose keys/values may be extended by an external (prefix) set.

    ``forward`` is used by both the prefix encoder (bidirectional, no RoPE: all prefix tokens sit
    at the same capture step, so relative angles among them are zero anyway) and the decoder.
    """

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # (B, T, C) each
        shape = (B, T, self.n_head, self.head_dim)
        return (q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2),
                v.view(shape).transpose(1, 2))  # (B, heads, T, head_dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + mask) v, then the output projection -> (B, T, C).

        ``mask``: bool (True = attend) or additive float (0 / -inf). One query (the cached
        step) takes four small matmul/softmax ops: SDPA's CPU kernel costs ~190 us of setup per
        call there, more than the arithmetic.
        """
        if q.shape[2] == 1 and mask is not None and mask.dtype != torch.bool:
            att = torch.matmul(q, k.transpose(-2, -1)).mul_(self.head_dim ** -0.5).add_(mask)
            y = torch.matmul(att.softmax(dim=-1), v)  # (B, heads, 1, head_dim)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, T, hd)
        B, _, T, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, n_embd: int, ffn: int):
        super().__init__()
        self.fc = nn.Linear(n_embd, ffn)
        self.proj = nn.Linear(ffn, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class PrefixBlock(nn.Module):
    """Bidirectional pre-LN block over prefix tokens; exposes its K/V for the decoder layer.
    ``dropout``: on both residual branches, in training only (eval mode: the identity)."""

    def __init__(self, n_embd: int, n_head: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, ffn)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.attn.qkv_heads(self.ln_1(h))  # (B, heads, N, head_dim)
        h = h + self.drop(self.attn.attend(q, k, v, mask))
        h = h + self.drop(self.mlp(self.ln_2(h)))
        return h, k, v  # k un-rotated: the caller rotates it at the capture step


class DecoderBlock(nn.Module):
    """Causal pre-LN block over step tokens; keys = [its prefix layer's K/V ; step K/V].
    ``dropout`` as in ``PrefixBlock``."""

    def __init__(self, n_embd: int, n_head: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, ffn)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                memory: "_Memory", layer: int) -> torch.Tensor:
        q, k, v = self.attn.qkv_heads(self.ln_1(x))  # (B, heads, T, head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values, mask = memory.keys_values(layer, k, v)
        x = x + self.drop(self.attn.attend(q, keys, values, mask))
        return x + self.drop(self.mlp(self.ln_2(x)))


class _Memory:
    """Where a decoder layer's keys/values/mask come from during a whole-sequence forward.

    The cached path passes a ``HybridKVCache`` instead, which has the same ``keys_values``
    method; that is the one seam between training and inference.
    """

    def __init__(self, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
                 mask: torch.Tensor):
        self.prefix_kv = prefix_kv
        self.mask = mask  # (B, 1, T, P + T) bool, True = may attend

    def keys_values(self, layer: int, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.prefix_kv is None:
            return k, v, self.mask
        pk, pv = self.prefix_kv[layer]  # (B, heads, P, head_dim)
        return torch.cat((pk, k), dim=2), torch.cat((pv, v), dim=2), self.mask


class _SlotMemory:
    """``keys_values`` for ``ARExpert.step_static``: the new token's k/v go into the cache
    memory at ``slot``, a (1,) int64 device tensor, so nothing in the step depends on a host
    integer (a CUDA graph replays it for any slot)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                 slot: torch.Tensor):
        self.keys, self.values = keys, values  # (n_layer, 1, heads, slots, head_dim)
        self.bias, self.slot = bias, slot      # (1, 1, 1, slots) additive mask, (1,) int64

    def keys_values(self, layer: int, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer], self.values[layer]  # (1, heads, slots, head_dim)
        keys.index_copy_(2, self.slot, k)
        values.index_copy_(2, self.slot, v)
        return keys, values, self.bias


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class ExpertConfig:
    """Hyper-parameters of the expert; saved in every checkpoint, the model is rebuilt from it."""

    state_dim: int = 7               # proprio dims fed per step (joint positions)
    action_dim: int = 7              # action dims predicted per step (absolute joint targets)
    prefix_dim: int = 384            # dim of the backbone tokens perception publishes
    max_prefix_tokens: int = 64      # most prefix tokens one refresh may carry (cache slot size)
    n_embd: int = 512                # width of prefix encoder and decoder
    n_layer: int = 4                 # decoder layers = prefix-encoder layers (layer i <-> i)
    n_head: int = 8
    ffn: int = 3200                  # MLP hidden width
    window: int = 100                # W: step tokens in the rolling memory (itself included)
    head: Literal["binned", "regression"] = "binned"
    n_bins: int = 256                # bins per action dim (binned head)
    delta_actions: bool = False      # predict action - state instead of the absolute target
    use_prev_action: bool = False    # step token also sees the previous action target
    aux_chunk: int = 0               # >0: ACT-style auxiliary head predicting this many actions
    aux_loss_weight: float = 0.1     # weight of the auxiliary chunk loss
    predict_steps: int = 1           # K: each step token is trained on its next K targets
    plan_anchor: Literal["own", "current"] = "own"   # delta actions, K > 1: token t's target
    #                                  for step t+k is action[t+k] - state[t+k] ("own": every
    #                                  step's own delta) or action[t+k] - state[t] ("current":
    #                                  where the arm is to be in k steps, seen from now)
    plan_weight: Literal["relative", "uniform"] = "relative"   # plan_anchor "current": how the
    #                                  loss weighs step t+k of a plan. "relative": each k > 0
    #                                  divided by its mean |target| in the batch, so the far
    #                                  steps, which move more, do not outweigh the executed
    #                                  k = 0; "uniform": every k counts by its error in target
    #                                  units, as the mean of the last ensemble_steps plans that
    #                                  the node executes weighs them
    regression_loss: Literal["l1", "l2", "huber"] = "l1"   # regression head: "l1" fits each
    #                                  target's conditional median, which sits exactly on "no
    #                                  motion" wherever the demonstrator rested more than half
    #                                  the time among states the model cannot tell apart; "l2"
    #                                  fits the mean (it shrinks towards rest, never snaps onto
    #                                  it); "huber": l2 within huber_delta of the target, l1 beyond
    huber_delta: float = 1.0         # "huber": where it turns linear, in target-normalised units
    detach_prefix: bool = False      # stop the action loss from training the prefix encoder
    prefix_kv: Literal["layerwise", "final"] = "layerwise"   # what decoder layer i attends to:
    #                                  "layerwise" (pi0): prefix layer i's own K/V, so layer 0
    #                                  reads the projected backbone tokens and the last prefix
    #                                  block's output is never read; "final" (encoder-decoder):
    #                                  K/V projected per decoder layer from the prefix encoder's
    #                                  output after all its blocks
    dropout: float = 0.0             # residual dropout in every block, training only (against
    #                                  over-fitting few demonstrations; inference is unchanged)
    rope_base: float = 10000.0
    rope_dims: int = 0               # dims of each head that RoPE rotates (0: all). Fewer
    #                                  (GPT-NeoX partial rotary) leave the rest pure content:
    #                                  a prefix key's rotation encodes its staleness, which
    #                                  varies, so rotated dims match content only up to it

    def __post_init__(self) -> None:
        for key in ("state_dim", "action_dim", "prefix_dim", "max_prefix_tokens", "n_embd",
                    "n_layer", "n_head", "ffn", "window"):
            require(getattr(self, key) > 0, key, getattr(self, key), "must be > 0")
        require(self.n_embd % self.n_head == 0, "n_embd", self.n_embd,
                f"must be divisible by n_head={self.n_head}")
        require((self.n_embd // self.n_head) % 2 == 0, "n_head", self.n_head,
                f"head_dim = n_embd/n_head = {self.n_embd // self.n_head} must be even for RoPE")
        require(self.head in ("binned", "regression"), "head", self.head,
                "must be 'binned' or 'regression'")
        require(self.n_bins >= 2, "n_bins", self.n_bins, "must be >= 2")
        require(self.aux_chunk >= 0, "aux_chunk", self.aux_chunk, "must be >= 0")
        require(self.aux_loss_weight >= 0, "aux_loss_weight", self.aux_loss_weight, "must be >= 0")
        require(self.predict_steps >= 1, "predict_steps", self.predict_steps, "must be >= 1")
        require(self.plan_anchor in ("own", "current"), "plan_anchor", self.plan_anchor,
                "must be 'own' or 'current'")
        if self.plan_anchor == "current" and not self.delta_actions:
            raise ConfigError("plan_anchor: 'current' re-anchors delta targets; it needs "
                              "delta_actions: true (absolute targets have no anchor)")
        if self.plan_anchor == "current" and self.head != "regression":
            raise ConfigError("plan_anchor: 'current' trains re-anchored targets by regression; "
                              f"it needs head: regression, got head: {self.head!r}")
        require(self.plan_weight in ("relative", "uniform"), "plan_weight", self.plan_weight,
                "must be 'relative' or 'uniform'")
        require(self.regression_loss in ("l1", "l2", "huber"), "regression_loss",
                self.regression_loss, "must be 'l1', 'l2' or 'huber'")
        if self.regression_loss != "l1" and self.head != "regression":
            raise ConfigError(f"regression_loss: {self.regression_loss!r} scores a regression "
                              f"head; head: {self.head!r} is trained by cross-entropy")
        require(self.huber_delta > 0, "huber_delta", self.huber_delta, "must be > 0")
        require(self.prefix_kv in ("layerwise", "final"), "prefix_kv", self.prefix_kv,
                "must be 'layerwise' or 'final'")
        require(self.rope_base > 1.0, "rope_base", self.rope_base, "must be > 1")
        require(self.rope_dims == 0 or (self.rope_dims % 2 == 0
                                        and 2 <= self.rope_dims <= self.n_embd // self.n_head),
                "rope_dims", self.rope_dims,
                f"must be 0 (all) or even and in [2, head_dim={self.n_embd // self.n_head}]")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        if self.delta_actions and self.state_dim != self.action_dim:
            raise ConfigError(f"delta_actions: needs state_dim == action_dim, got "
                              f"state_dim={self.state_dim}, action_dim={self.action_dim}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# --------------------------------------------------------------------------------------------
# The model


@dataclass
class PrefixBatch:
    """Prefixes of a training batch: F frames per sample, each seen by some of the steps."""

    tokens: torch.Tensor    # (B, F, N, prefix_dim) float
    capture: torch.Tensor   # (B, F) int64: capture step of each frame
    assign: torch.Tensor    # (B, T) int64: frame each step token attends to, -1 = none


class ARExpert(nn.Module):
    """Prefix encoder + causal step decoder + action head. See the module docstring."""

    def __init__(self, config: ExpertConfig):
        super().__init__()
        c = self.config = config
        self.prefix_in = nn.Linear(c.prefix_dim, c.n_embd)
        self.prefix_pos = nn.Parameter(torch.zeros(c.max_prefix_tokens, c.n_embd))
        self.prefix_blocks = nn.ModuleList(PrefixBlock(c.n_embd, c.n_head, c.ffn, c.dropout)
                                           for _ in range(c.n_layer))
        if c.prefix_kv == "final":
            self.prefix_ln = nn.LayerNorm(c.n_embd)
            self.prefix_kv_proj = nn.ModuleList(nn.Linear(c.n_embd, 2 * c.n_embd)
                                                for _ in range(c.n_layer))
        self.state_in = nn.Linear(c.state_dim, c.n_embd)
        self.prev_in = nn.Linear(c.action_dim, c.n_embd, bias=False) if c.use_prev_action else None
        self.blocks = nn.ModuleList(DecoderBlock(c.n_embd, c.n_head, c.ffn, c.dropout)
                                    for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        out = c.predict_steps * c.action_dim * (c.n_bins if c.head == "binned" else 1)
        self.head = nn.Linear(c.n_embd, out)
        # bin centres (normalised target units), sorted per dim; set by fit_bins before training
        self.register_buffer("bin_centers", torch.linspace(-2, 2, c.n_bins).repeat(c.action_dim, 1)
                             if c.head == "binned" else torch.zeros(0))
        if c.aux_chunk > 0:
            self.aux_ln = nn.LayerNorm(c.n_embd)
            self.aux_head = nn.Linear(c.n_embd, c.aux_chunk * c.action_dim)
        self.apply(self._init_weights)
        nn.init.normal_(self.prefix_pos, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables at step indices ``positions`` with this model's head size, base and
        rotated dims: the one place the prefix encoder and every decoder path take them from."""
        c = self.config
        return rope_cos_sin(positions, c.head_dim, c.rope_base, dtype, c.rope_dims)

    # ---- prefix -------------------------------------------------------------------------------

    def encode_prefix(self, tokens: torch.Tensor, capture: torch.Tensor
                      ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Backbone tokens (B, N, prefix_dim) captured at steps ``capture`` (B,) ->
        per-layer (k rotated at the capture step, v), each (B, heads, N, head_dim), and the last
        hidden state (B, N, n_embd) for the auxiliary head."""
        c = self.config
        B, N, D = tokens.shape
        if D != c.prefix_dim or N > c.max_prefix_tokens or N < 1:
            raise ValueError(f"prefix tokens must be (B, N<= {c.max_prefix_tokens}, "
                             f"{c.prefix_dim}), got {tuple(tokens.shape)}")
        h = self.prefix_in(tokens) + self.prefix_pos[:N]  # (B, N, C)
        cos, sin = self._rope(capture.view(B, 1, 1), h.dtype)
        kv = []
        for block in self.prefix_blocks:
            h, k, v = block(h, None)
            if c.prefix_kv == "layerwise":
                kv.append((apply_rope(k, cos, sin), v))  # k rotated once, at the capture step
        if c.prefix_kv == "final":                   # every layer reads the encoder's output
            final = self.prefix_ln(h)
            for proj in self.prefix_kv_proj:
                k, v = proj(final).view(B, N, 2, c.n_head, c.head_dim).permute(2, 0, 3, 1, 4)
                kv.append((apply_rope(k, cos, sin), v))
        if c.detach_prefix:
            kv = [(k.detach(), v.detach()) for k, v in kv]
        return kv, h

    def aux_chunk(self, prefix_hidden: torch.Tensor) -> torch.Tensor:
        """ACT-style auxiliary prediction of the next aux_chunk targets from the prefix alone:
        (B, N, C) -> (B, aux_chunk, action_dim), normalised target units."""
        c = self.config
        pooled = self.aux_ln(prefix_hidden.mean(dim=1))  # (B, C)
        return self.aux_head(pooled).view(-1, c.aux_chunk, c.action_dim)

    # ---- step tokens --------------------------------------------------------------------------

    def embed_steps(self, states: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """(B, T, state_dim) [+ (B, T, action_dim)] normalised -> (B, T, n_embd)."""
        x = self.state_in(states)
        if self.prev_in is not None:
            if prev is None:
                raise ValueError("config.use_prev_action=True needs the previous action targets")
            x = x + self.prev_in(prev)
        return x

    def window_mask(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, T) step indices -> (B, T, T) bool: key s visible to query t iff
        ``pos[t] - W < pos[s] <= pos[t]``, the rolling memory of W steps (itself included)."""
        d = positions.unsqueeze(2) - positions.unsqueeze(1)  # (B, T, T): pos[t] - pos[s]
        return (d >= 0) & (d < self.config.window)

    def forward(self, states: torch.Tensor, positions: torch.Tensor, *,
                prev: torch.Tensor | None = None, prefix: PrefixBatch | None = None,
                step_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Whole sequences (training / reference). Returns (head output, aux chunk or None).

        states (B, T, state_dim) normalised, positions (B, T) int64 absolute step indices,
        step_mask (B, T, T) bool extra restriction on step->step attention (e.g. dropped
        history). Head output: logits (B, T, action_dim, n_bins) or values (B, T, action_dim).
        """
        c = self.config
        if states.dim() != 3 or states.shape[-1] != c.state_dim:
            raise ValueError(f"states must be (B, T, {c.state_dim}), got {tuple(states.shape)}")
        B, T, _ = states.shape
        if positions.shape != (B, T):
            raise ValueError(f"positions must be {(B, T)}, got {tuple(positions.shape)}")
        x = self.embed_steps(states, prev)  # (B, T, C)
        mask = self.window_mask(positions)  # (B, T, T)
        if step_mask is not None:
            mask = mask & step_mask
        prefix_kv, aux = None, None
        if prefix is not None:
            Bf, Fn, N, D = prefix.tokens.shape
            if Bf != B or prefix.capture.shape != (B, Fn) or prefix.assign.shape != (B, T):
                raise ValueError(
                    f"prefix shapes disagree with states (B={B}, T={T}): tokens "
                    f"{tuple(prefix.tokens.shape)}, capture {tuple(prefix.capture.shape)}, "
                    f"assign {tuple(prefix.assign.shape)}")
            kv, hidden = self.encode_prefix(prefix.tokens.reshape(B * Fn, N, D),
                                            prefix.capture.reshape(B * Fn))
            # frames of one sample side by side: (B, heads, F*N, head_dim)
            prefix_kv = [tuple(t.view(B, Fn, c.n_head, N, c.head_dim).transpose(1, 2)
                               .reshape(B, c.n_head, Fn * N, c.head_dim) for t in pair)
                         for pair in kv]
            frame_of_key = torch.arange(Fn, device=x.device).repeat_interleave(N)  # (F*N,)
            sees = prefix.assign.unsqueeze(-1) == frame_of_key  # (B, T, F*N)
            mask = torch.cat((sees, mask), dim=-1)  # (B, T, F*N + T)
            if c.aux_chunk > 0:
                aux = self.aux_chunk(hidden).view(B, Fn, c.aux_chunk, c.action_dim)
        cos, sin = self._rope(positions.unsqueeze(1), x.dtype)
        memory = _Memory(prefix_kv, mask.unsqueeze(1))
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, memory, i)
        return self.head_out(self.ln_f(x)), aux

    def step(self, states: torch.Tensor, positions: torch.Tensor, cache: "HybridKVCache",
             prev: torch.Tensor | None = None) -> torch.Tensor:
        """One (or a few) new step tokens against the cache: the inference path.

        states (1, T, state_dim) normalised, positions (1, T). The cache decides where the new
        keys go (committed ring slot or speculative scratch slot) and which keys are visible.
        """
        x = self.embed_steps(states, prev)
        cos, sin = self._rope(positions.unsqueeze(1), x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        return self.head_out(self.ln_f(x))

    def step_static(self, states: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
                    values: torch.Tensor, bias: torch.Tensor, slot: torch.Tensor,
                    prev: torch.Tensor | None = None) -> torch.Tensor:
        """``step`` for one token with every input a tensor of a fixed shape: the form a CUDA
        graph can capture (``policy.StaticStep``). Same arithmetic as ``step``, so the same
        result: only where the k/v are written and where the mask comes from differ.

        states (1, 1, state_dim) normalised, positions (1, 1) int64, keys/values the cache
        memory (n_layer, 1, heads, slots, head_dim), written in place at ``slot`` ((1,) int64,
        index on the slot axis), bias (1, 1, 1, slots) the additive mask of this query
        (``HybridKVCache.mark_step``).
        """
        x = self.embed_steps(states, prev)  # (1, 1, C)
        cos, sin = self._rope(positions.unsqueeze(1), x.dtype)
        memory = _SlotMemory(keys, values, bias, slot)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, memory, i)
        return self.head_out(self.ln_f(x))

    # ---- heads --------------------------------------------------------------------------------

    def head_out(self, h: torch.Tensor) -> torch.Tensor:
        """(..., n_embd) -> (..., [K,] action_dim[, n_bins]); the K axis only if predict_steps > 1."""
        return self.head(h).view(*h.shape[:-1], *self.out_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-token shape of the head output: ([K,] action_dim[, n_bins])."""
        c = self.config
        shape = ((c.predict_steps,) if c.predict_steps > 1 else ()) + (c.action_dim,)
        return shape + ((c.n_bins,) if c.head == "binned" else ())

    def decode(self, out: torch.Tensor, *, all_steps: bool = False) -> torch.Tensor:
        """Head output -> normalised targets (..., action_dim) of the token's own step: argmax
        bin centre or the value. The extra multi-token predictions are dropped, or with
        ``all_steps`` (and predict_steps K > 1) kept: (..., K, action_dim), k = 0 its own step."""
        c = self.config
        if c.predict_steps > 1 and not all_steps:
            out = out.select(-3 if c.head == "binned" else -2, 0)
        if c.head == "regression":
            return out
        idx = out.argmax(dim=-1)  # (..., A)
        centers = self.bin_centers  # (A, n_bins)
        flat = idx.reshape(-1, c.action_dim)
        vals = centers.gather(1, flat.t()).t()  # (M, A)
        return vals.reshape(idx.shape)

    def loss(self, out: torch.Tensor, target: torch.Tensor,
             weight: torch.Tensor | None = None, anchor: torch.Tensor | None = None
             ) -> torch.Tensor:
        """Action loss averaged with weights (B, T) (e.g. 0 for unused tokens).

        Binned: cross-entropy against the nearest bin centre per dim; regression: L1 (or
        ``regression_loss``: L2, Huber). With
        predict_steps K > 1, token t is also scored on targets t+1 .. t+K-1 of its window, where
        both steps count; every (token, k) pair weighs the same. With ``plan_anchor: current``
        (regression) the target for t+k is re-anchored at token t's state: ``anchor`` (B, T, A)
        is the state in target-normalised units (state / target std), so target[t+k] +
        anchor[t+k] - anchor[t] is (action[t+k] - state[t]) normalised; with ``plan_weight:
        relative`` each k > 0 is divided by its mean |target| in the batch (at least 1), so far
        steps, which move more, do not outweigh the executed k = 0; ``uniform`` leaves every k
        at its error in target units.
        """
        if weight is None:
            weight = torch.ones(target.shape[:2], dtype=target.dtype, device=target.device)
        K = self.config.predict_steps
        if K == 1:
            return (self._per_token(out, target) * weight).sum() / weight.sum().clamp_min(1e-8)
        current = self.config.plan_anchor == "current"   # the config ensures a regression head
        if current and anchor is None:
            raise ValueError("plan_anchor 'current' needs the batch's 'anchor' "
                             "(SampleBuilder(..., anchors=True))")
        T = target.shape[1]
        num, den = out.new_zeros(()), out.new_zeros(())
        for k in range(min(K, T)):
            w = weight[:, :T - k] * weight[:, k:]  # (B, T-k)
            tk, scale = target[:, k:], 1.0
            if current and k > 0:
                tk = tk + anchor[:, k:] - anchor[:, :T - k]
                if self.config.plan_weight == "relative":
                    scale = ((tk.abs().mean(-1) * w).sum() / w.sum().clamp_min(1e-8)).detach().clamp_min(1.0)
            if self.config.regression_loss == "l1":
                per = self._per_token(out[:, :T - k, k], tk) / scale
            else:   # the loss of the scaled errors, so that "relative" weighs k as for L1
                per = self._per_token(out[:, :T - k, k] / scale, tk / scale)
            num = num + (per * w).sum()
            den = den + w.sum()
        return num / den.clamp_min(1e-8)

    def _per_token(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, T, A[, n_bins]) against targets (B, T, A) -> (B, T), mean over action dims."""
        if self.config.head == "binned":
            labels = encode_bins(target, self.bin_centers)  # (B, T, A)
            per = F.cross_entropy(out.flatten(0, -2), labels.flatten(), reduction="none")
            return per.view(target.shape).mean(-1)
        if self.config.regression_loss == "l2":
            return (out - target).square().mean(-1)
        if self.config.regression_loss == "huber":
            return F.huber_loss(out, target, reduction="none", delta=self.config.huber_delta).mean(-1)
        return (out - target).abs().mean(-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def encode_bins(values: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest bin centre per dim: values (..., A), centers (A, n_bins) sorted."""
    A = centers.shape[0]
    flat = values.reshape(-1, A).t().contiguous()  # (A, M)
    # nearest of sorted centres: compare against midpoints between neighbours
    mids = (centers[:, 1:] + centers[:, :-1]) / 2  # (A, n_bins-1)
    idx = torch.searchsorted(mids.contiguous(), flat)  # (A, M)
    return idx.t().reshape(values.shape)


def config_replace(config: ExpertConfig, **changes: object) -> ExpertConfig:
    """A copy of ``config`` with ``changes`` (validated again)."""
    return dataclasses.replace(config, **changes)


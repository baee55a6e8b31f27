"""ACT-style chunked baseline: the reactive policy the AR expert is compared against.

Same data, same perception, different action head. A chunked policy looks at the newest
vision-language prefix and the current joint state, predicts the next C actions at once and
forgets everything when it predicts again: it has no memory across chunks, like ACT, pi0 or any
chunk-based VLA. The AR expert (``arvla_action_expert``) instead emits one action per step and
keeps a rolling memory. Everything else is shared so the comparison isolates the head:

- training episodes come through ``arvla_action_expert.data`` (``SampleBuilder`` normalises
  them with the same statistics code), prefixes are the same backbone tokens, and a sample's
  prefix is as stale as the expert's stage-2 samples (capture step + a delay drawn by
  ``reanchor.sample_staleness``). The baseline is NOT told the delay: reactive heads have no
  re-anchoring, they act on "the newest frame" as if it were now;
- ``ChunkPolicy`` implements the ``ExpertPolicy`` interface (docs/CONTRACTS.md), so the
  unchanged ``ActionExpertNode`` runs it behind the same topics, limits and staleness rules.

Model (read top-down: config -> model -> policy): an encoder over [projected prefix tokens ;
current state token] (bidirectional), a decoder whose C learned query tokens cross-attend to it,
and a linear head -> C future absolute joint targets (normalised), L1 loss on the real steps.
ACT trains this as a CVAE with a style latent that is set to zero at test time; we train the
deterministic variant (no latent), which is what ACT runs at inference anyway and avoids a KL
weight to tune. Prefix tokens may be dropped in training (``prefix_dropout``) so the policy can
also act without any prefix (``allow_action_only``).

Two ways to execute chunks (``ChunkExecConfig.mode``):

- ``"chunk"``: predict at step k, execute rows 0 .. exec_horizon-1 open loop (the measured state
  is ignored in between), predict again at k + exec_horizon;
- ``"temporal_ensemble"``: predict a chunk EVERY step; the action for step k is the weighted mean
  of every stored chunk's row for k, with ACT's weights ``w_i = exp(-m * i)``, i = 0 for the
  OLDEST prediction (ACT's choice: m > 0 favours older predictions, a smoothing prior).

Checkpoints are a directory ``model.safetensors`` + ``config.json`` (format ``arvla-chunk/1``),
written and read by the expert's checkpoint code (``checkpoint.commit_checkpoint``: config.json is
the single commit point, an interrupted save is rolled forward on load); no pickle anywhere.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from arvla.config import ConfigError, from_dict, require, to_dict
from arvla_action_expert.checkpoint import (CONFIG, CheckpointError, checkpoint_tensors,
                                            commit_checkpoint, load_model_tensors,
                                            load_normalizers, read_checkpoint_config,
                                            read_committed_weights)
from arvla_action_expert.data import (EpisodeError, EpisodeSource, NpzEpisodeDir, SampleBuilder,
                                      episode_summary)
from arvla_action_expert.normalize import Normalizer
from arvla_action_expert.policy import MAX_LOOKAHEAD, PolicyBase
from arvla_action_expert.reanchor import sample_staleness
from arvla_action_expert.train import (OptimConfig, SyntheticConfig, autocast, build_source,
                                       check_data_matches_model, device_batches,
                                       load_train_config, loss_trend, make_optimizer,
                                       optimizer_step, resolve_device, show_progress, to_device)

__all__ = ["ChunkConfig", "ChunkDataConfig", "ChunkExecConfig", "ChunkPolicy", "ChunkTrainConfig",
           "ChunkTrainResult", "ChunkTransformer", "FORMAT", "MAX_LOOKAHEAD", "cli_main",
           "ensemble_weights", "load_chunk_checkpoint", "save_chunk_checkpoint",
           "train_chunk_policy", "train_chunk"]

log = logging.getLogger(__name__)

FORMAT = "arvla-chunk/1"
MODES = ("chunk", "temporal_ensemble")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class ChunkConfig:
    """Hyper-parameters of the chunked head; saved in every checkpoint, rebuilt from it."""

    state_dim: int = 7               # proprio dims (joint positions)
    action_dim: int = 7              # action dims (absolute joint targets)
    prefix_dim: int = 384            # dim of the backbone tokens perception publishes
    max_prefix_tokens: int = 64      # most prefix tokens one refresh may carry
    chunk: int = 20                  # C: actions predicted per forward pass
    n_embd: int = 256
    n_head: int = 8
    n_enc_layer: int = 4             # encoder over [prefix tokens ; state token]
    n_dec_layer: int = 1             # decoder over the C queries (ACT effectively runs 1)
    ffn: int = 1024
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for key in ("state_dim", "action_dim", "prefix_dim", "max_prefix_tokens", "chunk",
                    "n_embd", "n_head", "n_enc_layer", "n_dec_layer", "ffn"):
            require(getattr(self, key) > 0, key, getattr(self, key), "must be > 0")
        require(self.n_embd % self.n_head == 0, "n_embd", self.n_embd,
                f"must be divisible by n_head={self.n_head}")
        require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")

    @property
    def window(self) -> int:
        """What the node reports as memory capacity: a chunked head remembers one chunk."""
        return self.chunk


@dataclass
class ChunkExecConfig:
    """How the policy turns chunks into per-step actions (not a model property: one checkpoint
    serves both modes; the trained defaults are stored and can be overridden at load)."""

    mode: Literal["chunk", "temporal_ensemble"] = "chunk"
    exec_horizon: int = 0            # "chunk": steps executed per chunk (0 = the whole chunk)
    ensemble_m: float = 0.01         # "temporal_ensemble": w_i = exp(-m i), i = 0 oldest

    def __post_init__(self) -> None:
        require(self.mode in MODES, "mode", self.mode, f"must be one of {list(MODES)}")
        require(self.exec_horizon >= 0, "exec_horizon", self.exec_horizon, "must be >= 0")
        require(math.isfinite(self.ensemble_m), "ensemble_m", self.ensemble_m, "must be finite")


@dataclass
class ChunkDataConfig:
    path: str = ""               # directory of .npz episodes; "" = synthetic episodes
    max_staleness: int = 4       # prefix delays d in [0, max_staleness], as the expert's stage 2
    prefix_dropout: float = 0.05  # P(a sample sees no prefix): lets it act action-only
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        require(self.max_staleness >= 0, "max_staleness", self.max_staleness, "must be >= 0")
        require(0 <= self.prefix_dropout <= 1, "prefix_dropout", self.prefix_dropout,
                "must be in [0, 1]")


@dataclass
class ChunkTrainConfig:
    model: ChunkConfig = field(default_factory=ChunkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: ChunkDataConfig = field(default_factory=ChunkDataConfig)
    exec: ChunkExecConfig = field(default_factory=ChunkExecConfig)
    seed: int = 0
    log_every: int = 50
    num_threads: int = 0         # torch intra-op threads (0 = torch's default)

    def __post_init__(self) -> None:
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require(self.num_threads >= 0, "num_threads", self.num_threads, "must be >= 0")


# --------------------------------------------------------------------------------------------
# The model


class ChunkTransformer(nn.Module):
    """[prefix tokens ; state] -> encoder -> C learned queries -> decoder -> (C, action_dim)."""

    def __init__(self, config: ChunkConfig):
        super().__init__()
        c = self.config = config
        self.prefix_in = nn.Linear(c.prefix_dim, c.n_embd)
        self.prefix_pos = nn.Parameter(torch.zeros(c.max_prefix_tokens, c.n_embd))
        self.state_in = nn.Linear(c.state_dim, c.n_embd)
        self.state_pos = nn.Parameter(torch.zeros(1, c.n_embd))  # marks the state token
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(c.n_embd, c.n_head, c.ffn, c.dropout, activation="gelu",
                                       batch_first=True, norm_first=True),
            c.n_enc_layer, norm=nn.LayerNorm(c.n_embd), enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.zeros(c.chunk, c.n_embd))
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(c.n_embd, c.n_head, c.ffn, c.dropout, activation="gelu",
                                       batch_first=True, norm_first=True),
            c.n_dec_layer, norm=nn.LayerNorm(c.n_embd))
        self.head = nn.Linear(c.n_embd, c.action_dim)
        for p in (self.prefix_pos, self.state_pos, self.queries):
            nn.init.normal_(p, std=0.02)

    def forward(self, states: torch.Tensor, tokens: torch.Tensor | None,
                token_valid: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, state_dim) normalised; tokens (B, N, prefix_dim) or None; token_valid
        (B, N) bool (False = padding / dropped prefix). Returns (B, C, action_dim) normalised."""
        c = self.config
        if states.dim() != 2 or states.shape[1] != c.state_dim:
            raise ValueError(f"states must be (B, {c.state_dim}), got {tuple(states.shape)}")
        B = states.shape[0]
        s = (self.state_in(states) + self.state_pos).unsqueeze(1)  # (B, 1, E)
        if tokens is None:
            x, pad = s, None
        else:
            if tokens.dim() != 3 or tokens.shape[0] != B or tokens.shape[2] != c.prefix_dim or not (
                    1 <= tokens.shape[1] <= c.max_prefix_tokens):
                raise ValueError(f"prefix tokens must be ({B}, 1..{c.max_prefix_tokens}, "
                                 f"{c.prefix_dim}), got {tuple(tokens.shape)}")
            N = tokens.shape[1]
            p = self.prefix_in(tokens) + self.prefix_pos[:N]  # (B, N, E)
            x = torch.cat((p, s), dim=1)  # (B, N+1, E)
            pad = None
            if token_valid is not None:
                keep = torch.cat((token_valid, torch.ones(B, 1, dtype=torch.bool,
                                                          device=states.device)), dim=1)
                pad = ~keep  # (B, N+1) True = ignore; the state token is always kept
        memory = self.encoder(x, src_key_padding_mask=pad)  # (B, N+1, E)
        q = self.queries.unsqueeze(0).expand(B, -1, -1)  # (B, C, E)
        h = self.decoder(q, memory, memory_key_padding_mask=pad)  # (B, C, E)
        return self.head(h)  # (B, C, A)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def chunk_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 over the chunk rows that lie inside the episode (ACT's ``is_pad`` mask)."""
    per = (pred - target).abs().mean(-1)  # (B, C)
    w = valid.float()
    return (per * w).sum() / w.sum().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# Training samples (from the expert's SampleBuilder: same episodes, same normalisation code)


def chunk_batch(builder: SampleBuilder, batch_size: int, chunk: int, max_staleness: int,
                prefix_dropout: float, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Frame f captured at c, current step u = c + d (d sampled as for the expert's stage 2),
    state at u, targets u .. u+C-1 (rows past the episode end are padding).

    Episodes without frames give prefix-less samples at a uniform step."""
    delays = sample_staleness(g, (batch_size,), max_staleness)
    shape = builder.prefix_shape
    N, P = shape if shape is not None else (1, 1)
    states = torch.zeros(batch_size, builder.state_dim)
    target = torch.zeros(batch_size, chunk, builder.action_dim)
    valid = torch.zeros(batch_size, chunk, dtype=torch.bool)
    tokens = torch.zeros(batch_size, N, P)
    token_valid = torch.zeros(batch_size, N, dtype=torch.bool)
    drop = torch.rand(batch_size, generator=g) < prefix_dropout
    for b in range(batch_size):
        e = int(torch.randint(len(builder.episodes), (1,), generator=g))
        T = builder.states[e].shape[0]
        frames = builder.episodes[e].frame_steps
        if len(frames):
            f = int(torch.randint(len(frames), (1,), generator=g))
            u = min(int(frames[f]) + int(delays[b]), T - 1)
            if not drop[b]:
                tokens[b] = builder.tokens[e][f]
                token_valid[b] = True
        else:
            u = int(torch.randint(T, (1,), generator=g))
        n = min(chunk, T - u)
        states[b] = builder.states[e][u]
        target[b, :n] = builder.targets[e][u:u + n]
        valid[b, :n] = True
    return {"states": states, "target": target, "valid": valid, "tokens": tokens,
            "token_valid": token_valid}


def _forward(model: ChunkTransformer, batch: dict[str, torch.Tensor],
             has_prefix: bool | None = None) -> torch.Tensor:
    """``has_prefix``: whether any sample sees tokens, when known on the host (a GPU batch then
    needs no device->host sync for it)."""
    if has_prefix is None:
        has_prefix = bool(batch["token_valid"].any())
    return model(batch["states"], batch["tokens"] if has_prefix else None,
                 batch["token_valid"] if has_prefix else None)


@torch.no_grad()
def evaluate_chunk(model: ChunkTransformer, batch: dict[str, torch.Tensor]) -> float:
    """Mean L1 (normalised units) of the chunk rows inside the episode, in eval mode."""
    was = model.training
    model.eval()
    err = float(chunk_loss(_forward(model, batch), batch["target"], batch["valid"]))
    model.train(was)
    return err


# --------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class ChunkMeta:
    model_id: str = ""
    control_rate_hz: float = 20.0
    joint_names: list[str] = field(default_factory=list)
    step: int = 0
    max_staleness: int = 0       # largest prefix delay seen in training


def save_chunk_checkpoint(path: str | os.PathLike[str], model: ChunkTransformer, *,
                          state_norm: Normalizer, target_norm: Normalizer, meta: ChunkMeta,
                          exec_config: ChunkExecConfig,
                          train_config: dict[str, Any] | None = None) -> pathlib.Path:
    """Directory with weights (+ normaliser stats) and config.json, written by the expert's
    ``commit_checkpoint``: config.json (with the weights' sha256) is the single commit point."""
    doc = {"format": FORMAT, "chunk": to_dict(model.config), "exec": to_dict(exec_config),
           "meta": to_dict(meta), "train": train_config}
    return commit_checkpoint(path, doc, checkpoint_tensors(model, state_norm, target_norm),
                             fmt=FORMAT)


@dataclass
class LoadedChunk:
    model: ChunkTransformer
    state_norm: Normalizer
    target_norm: Normalizer
    meta: ChunkMeta
    exec_config: ChunkExecConfig
    path: pathlib.Path


def load_chunk_checkpoint(path: str | os.PathLike[str], device: str = "cpu") -> LoadedChunk:
    """Rebuild the model from config.json and load the weights; CheckpointError naming the file,
    key and shapes on any problem. A save cut after its commit point is rolled forward."""
    d, doc = read_checkpoint_config(path, FORMAT)
    try:
        config = from_dict(ChunkConfig, doc["chunk"], prefix="chunk.")
        exec_config = from_dict(ChunkExecConfig, doc.get("exec") or {}, prefix="exec.")
        meta = from_dict(ChunkMeta, doc.get("meta") or {}, prefix="meta.")
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{d / CONFIG}: invalid config: {err}") from err
    tensors, weights = read_committed_weights(d, doc, device)
    model = ChunkTransformer(config)
    load_model_tensors(model, tensors, source=str(weights))
    norms = load_normalizers(tensors, state_dim=config.state_dim, action_dim=config.action_dim,
                             source=weights)
    return LoadedChunk(model.to(device), *norms, meta, exec_config, d)


# --------------------------------------------------------------------------------------------
# The policy (ExpertPolicy interface)


def ensemble_weights(n: int, m: float) -> np.ndarray:
    """ACT's temporal-ensembling weights for n predictions of one step, oldest first:
    ``exp(-m * i)`` normalised to sum 1."""
    if n < 1:
        raise ValueError(f"ensemble_weights: need at least one prediction, got {n}")
    w = np.exp(-m * np.arange(n, dtype=np.float64))
    return w / w.sum()


class ChunkPolicy(PolicyBase):
    """A chunked (reactive) policy behind the ``ExpertPolicy`` interface (docs/CONTRACTS.md).

    ``cache_fill`` / ``cache_capacity`` report the position inside the current chunk / C: the
    only "memory" a chunked head has.
    """

    config: ChunkConfig

    def __init__(self, model: ChunkTransformer, *, state_norm: Normalizer,
                 target_norm: Normalizer, control_rate_hz: float, model_id: str = "",
                 joint_names: Sequence[str] = (), exec_config: ChunkExecConfig | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__(model, state_norm=state_norm, target_norm=target_norm,
                         control_rate_hz=control_rate_hz, model_id=model_id,
                         joint_names=joint_names, device=device)
        c = self.config
        self.exec = exec_config or ChunkExecConfig()
        if self.exec.exec_horizon > c.chunk:
            raise ConfigError(f"exec_horizon: {self.exec.exec_horizon} > the model's chunk "
                              f"{c.chunk}")
        self._prefix: torch.Tensor | None = None  # (1, N, prefix_dim)
        self._capture: int | None = None
        # "chunk": the chunk in execution; "temporal_ensemble": recent chunks by start step
        self._chunks: dict[int, np.ndarray] = {}  # start step -> (C, A) real units
        self._fill = 0

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "cpu", *,
                        exec_config: ChunkExecConfig | None = None) -> "ChunkPolicy":
        """Load a checkpoint (CheckpointError on any problem); ``exec_config`` overrides the
        execution mode stored at training time."""
        ck = load_chunk_checkpoint(path, device=device)
        return cls(ck.model, state_norm=ck.state_norm, target_norm=ck.target_norm,
                   control_rate_hz=ck.meta.control_rate_hz, model_id=ck.meta.model_id,
                   joint_names=ck.meta.joint_names, exec_config=exec_config or ck.exec_config,
                   device=device)

    @classmethod
    def build_untrained(cls, config: ChunkConfig, *, seed: int = 0, control_rate_hz: float = 20.0,
                        model_id: str = "", joint_names: Sequence[str] = (),
                        exec_config: ChunkExecConfig | None = None) -> "ChunkPolicy":
        """Random weights and identity normalisation: for wiring tests only."""
        log.warning("ChunkPolicy.build_untrained: random weights (seed %d), actions are "
                    "meaningless", seed)
        torch.manual_seed(seed)
        return cls(ChunkTransformer(config), state_norm=Normalizer.identity(config.state_dim),
                   target_norm=Normalizer.identity(config.action_dim),
                   control_rate_hz=control_rate_hz, model_id=model_id, joint_names=joint_names,
                   exec_config=exec_config)

    def with_exec(self, exec_config: ChunkExecConfig) -> "ChunkPolicy":
        """The same weights under another execution mode (a fresh policy, memory empty)."""
        return ChunkPolicy(self.model, state_norm=self.state_norm, target_norm=self.target_norm,
                           control_rate_hz=self.control_rate_hz, model_id=self.model_id,
                           joint_names=self.joint_names, exec_config=exec_config,
                           device=self.device)

    @property
    def exec_horizon(self) -> int:
        return self.exec.exec_horizon or self.config.chunk

    # ---- memory (what a chunked head has of it) ----------------------------------------------

    @property
    def cache_fill(self) -> int:
        return self._fill

    @property
    def cache_capacity(self) -> int:
        return self.config.chunk

    @property
    def prefix_capture_step(self) -> int | None:
        return self._capture

    def reset(self) -> None:
        self._chunks.clear()
        self._fill = 0
        self.clear_prefix()

    def refresh_prefix(self, tokens: np.ndarray, capture_step: int) -> None:
        """Keep the newest backbone tokens (N, prefix_dim); the next prediction reads them.
        ``capture_step`` is recorded but not used: a reactive head has no re-anchoring."""
        tokens = self._checked_tokens(tokens)
        self._prefix = torch.tensor(tokens, dtype=torch.float32, device=self.device)[None]  # a copy
        self._capture = int(capture_step)

    def clear_prefix(self) -> None:
        self._prefix, self._capture = None, None

    # ---- acting -------------------------------------------------------------------------------

    def predict_chunk(self, state: np.ndarray) -> np.ndarray:
        """One forward pass: (C, action_dim) absolute targets in real units, from ``state`` and
        the newest prefix (none: action-only)."""
        x = torch.as_tensor(self.state_norm.normalize(state), device=self.device)[None]
        with torch.inference_mode():
            out = self.model(x, self._prefix)[0]  # (C, A)
        return self.target_norm.denormalize(out.float().cpu().numpy())

    def step(self, state: np.ndarray, step_index: int, lookahead: int = 1) -> np.ndarray:
        """Actions for ``step_index`` .. ``step_index + lookahead - 1``: (lookahead, action_dim)
        float64. Rows beyond the last predicted step repeat it (hold the chunk's end)."""
        state = self._checked_state(state, lookahead)
        k = int(step_index)
        if self.exec.mode == "chunk":
            return self._step_chunk(state, k, lookahead)
        return self._step_ensemble(state, k, lookahead)

    def _step_chunk(self, state: np.ndarray, k: int, lookahead: int) -> np.ndarray:
        start = next(iter(self._chunks), None)
        if start is None or not 0 <= k - start < self.exec_horizon:
            self._chunks = {k: self.predict_chunk(state)}
            start = k
        chunk = self._chunks[start]
        rows = np.minimum(np.arange(k - start, k - start + lookahead), len(chunk) - 1)
        self._fill = k - start + 1
        return chunk[rows].astype(np.float64)

    def _step_ensemble(self, state: np.ndarray, k: int, lookahead: int) -> np.ndarray:
        C = self.config.chunk
        # a chunk predicted at s covers s .. s+C-1; older ones can no longer contribute
        self._chunks = {s: ch for s, ch in self._chunks.items() if k - C < s < k}
        self._chunks[k] = self.predict_chunk(state)
        out = np.empty((lookahead, self.action_dim), np.float64)
        for j in range(lookahead):
            t = k + j
            rows = [ch[t - s] for s, ch in sorted(self._chunks.items()) if t - s < C]
            if not rows:  # beyond every chunk: hold the last predicted step
                out[j] = out[j - 1]
                continue
            w = ensemble_weights(len(rows), self.exec.ensemble_m)
            out[j] = np.einsum("i,ia->a", w, np.asarray(rows))
        self._fill = len(self._chunks)
        return out


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class ChunkTrainResult:
    losses: list[float]
    val_l1: float                # held-out batch L1 (normalised units), from the training data
    seconds: float
    path: pathlib.Path | None


def train_chunk(cfg: ChunkTrainConfig, *, out: str | pathlib.Path | None,
                source: EpisodeSource | None = None, progress: bool = True,
                device: str = "cpu", bf16: bool = False) -> ChunkTrainResult:
    """AdamW with linear warmup + cosine (the expert's schedule, ``train.lr_at``) on L1.
    ``device`` / ``bf16`` as for the expert (``train.train``): same batches on every device,
    the checkpoint holds CPU tensors."""
    dev = resolve_device(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    c = cfg.model
    source = source if source is not None else build_source(cfg.data.path, cfg.data.synthetic, c)
    builder = SampleBuilder(source, delta_actions=False)
    check_data_matches_model(builder, c, prefix="optional")
    torch.manual_seed(cfg.seed)
    model = ChunkTransformer(c)
    model.to(dev).train()
    o = cfg.optim
    opt = make_optimizer(model, o, no_decay=("queries",),
                         fused=True if dev.type == "cuda" else None)
    d = cfg.data
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003)
    losses: list[float] = []
    t0 = time.monotonic()
    bar = tqdm(range(o.max_steps), desc="chunk baseline", disable=not progress, mininterval=1.0)

    def host_batches() -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
        for _ in range(o.max_steps):
            batch = chunk_batch(builder, o.batch_size, c.chunk, d.max_staleness,
                                d.prefix_dropout, g)
            yield batch, bool(batch["token_valid"].any())

    batches = device_batches(host_batches(), dev)
    try:
        for step, (batch, has_prefix) in zip(bar, batches):
            with autocast(dev, bf16):
                loss = chunk_loss(_forward(model, batch, has_prefix), batch["target"],
                                  batch["valid"])
            optimizer_step(model, opt, loss, step, o)
            losses.append(loss.item())
            show_progress(bar, losses, step, cfg.log_every, o)
    finally:
        batches.close()  # stops the batch thread
    bar.close()
    seconds = time.monotonic() - t0
    val_g = torch.Generator().manual_seed(cfg.seed + 7)
    val_batch = chunk_batch(builder, 256, c.chunk, d.max_staleness, 0.0, val_g)
    val = evaluate_chunk(model, to_device(val_batch, dev))
    path = None
    if out is not None:
        summary = episode_summary(source)
        meta = ChunkMeta(model_id=str(summary["model_id"]),
                         control_rate_hz=float(summary["control_rate_hz"]),
                         joint_names=list(summary["joint_names"]), step=o.max_steps,
                         max_staleness=d.max_staleness)
        path = save_chunk_checkpoint(out, model, state_norm=builder.state_norm,
                                     target_norm=builder.target_norm, meta=meta,
                                     exec_config=cfg.exec, train_config=to_dict(cfg))
    log.info("chunk baseline: %d steps in %.1f s on %s%s, loss %.4f -> %.4f, held-out L1 %.4f",
             len(losses), seconds, dev, " (bf16 autocast)" if bf16 else "", losses[0],
             losses[-1], val)
    return ChunkTrainResult(losses, val, seconds, path)


def train_chunk_policy(episodes_source: EpisodeSource | str | os.PathLike[str],
                       cfg: ChunkTrainConfig, out_dir: str | os.PathLike[str], *,
                       progress: bool = True) -> pathlib.Path:
    """Train the baseline on ``episodes_source`` (a source or a directory of .npz episodes)
    and write its checkpoint to ``out_dir``; returns the checkpoint directory."""
    source = (NpzEpisodeDir(episodes_source) if isinstance(episodes_source, (str, os.PathLike))
              else episodes_source)
    result = train_chunk(cfg, out=out_dir, source=source, progress=progress)
    assert result.path is not None
    return result.path


# --------------------------------------------------------------------------------------------


def cli_main(argv: list[str]) -> int:
    """``arvla eval train-baseline``: train the chunked baseline."""
    ap = argparse.ArgumentParser(prog="arvla eval train-baseline",
                                 description="train the ACT-style chunked baseline")
    ap.add_argument("--config", required=True, help="chunk train config YAML (config/chunk_*.yaml)")
    ap.add_argument("--data", help="directory of .npz episodes (overrides data.path)")
    ap.add_argument("--out", required=True, help="checkpoint directory")
    ap.add_argument("--max-steps", type=int, help="override optim.max_steps")
    ap.add_argument("--device", default="auto",
                    help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for forward and loss")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(ChunkTrainConfig, args.config, data=args.data,
                                max_steps=args.max_steps)
        result = train_chunk(cfg, out=args.out, progress=not args.no_progress,
                             device=args.device, bf16=args.bf16)
    except (ConfigError, CheckpointError, EpisodeError) as err:
        print(f"arvla eval train-baseline: {err}", file=sys.stderr)
        return 2
    print(f"chunk baseline: {loss_trend(result.losses)} in {result.seconds:.1f} s, "
          f"held-out L1 {result.val_l1:.4f}; checkpoint {result.path}")
    return 0

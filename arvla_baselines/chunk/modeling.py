"""The chunked baseline's network (encoder over [prefix tokens ; state], C learned queries
cross-attending to it, a linear head), its L1 loss, and its checkpoints (format ``arvla-chunk/1``)."""

from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from arvla_base.config import ConfigError, from_dict, to_dict
from arvla_action_expert.checkpoint import (CONFIG, CheckpointError, checkpoint_tensors,
                                            commit_checkpoint, load_model_tensors,
                                            load_normalizers, read_checkpoint_config,
                                            read_committed_weights)
from arvla_action_expert.normalize import Normalizer

from arvla_baselines.chunk.configuration import FORMAT, ChunkConfig, ChunkExecConfig

log = logging.getLogger("arvla_baselines.chunk")


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

"""Configuration of the ACT-style chunked baseline: model, execution, data and training."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal


from arvla_base.config import require
from arvla_action_expert.train import SyntheticConfig
from arvla_base.training import (OptimConfig)


log = logging.getLogger("arvla_baselines.chunk")


FORMAT = "arvla-chunk/1"


MODES = ("chunk", "temporal_ensemble")
# the evaluation's policy names for the baseline -> its execution mode (one checkpoint, two policies)
POLICY_MODES = {"chunk": "chunk", "chunk_te": "temporal_ensemble"}


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
    val_path: str = ""           # held-out .npz episodes: their loss every val_every steps, in
    #                              val_curve.json beside the checkpoint ("" = none)
    val_batches: int = 8         # fixed held-out batches of batch_size per point
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        require(self.max_staleness >= 0, "max_staleness", self.max_staleness, "must be >= 0")
        require(self.val_batches >= 1, "val_batches", self.val_batches, "must be >= 1")
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
    val_every: int = 0           # held-out loss (data.val_path) every this many steps (0 = at
    #                              the end only)

    def __post_init__(self) -> None:
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require(self.val_every >= 0, "val_every", self.val_every, "must be >= 0")
        require(self.num_threads >= 0, "num_threads", self.num_threads, "must be >= 0")

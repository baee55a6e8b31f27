"""``ChunkPolicy``: the chunked baseline as a ``StepPolicy`` the expert node runs (chunks executed
open loop, or ACT's temporal ensembling)."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import torch

from arvla_base.config import ConfigError
from arvla_action_expert.normalize import Normalizer
from arvla_action_expert.policy import PolicyBase

from arvla_baselines.chunk.configuration import ChunkConfig, ChunkExecConfig
from arvla_baselines.chunk.modeling import ChunkTransformer, load_chunk_checkpoint

log = logging.getLogger("arvla_baselines.chunk")


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

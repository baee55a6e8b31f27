"""``ExpertPolicy``: the model + its Hybrid KV cache + normalisation, in real units.

This is the object the expert node (and offline replay, and evaluation) drives, one control tick
at a time: ``refresh_prefix`` whenever perception delivers, ``step`` every tick. Everything here
is ROS-free; the node converts messages and time stamps (see ``reanchor``) and calls this.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import torch

from arvla_action_expert.cache import CacheError, HybridKVCache
from arvla_action_expert.model import ARExpert, ExpertConfig
from arvla_action_expert.normalize import Normalizer

__all__ = ["ExpertPolicy", "MAX_LOOKAHEAD", "PolicyBase"]

log = logging.getLogger(__name__)

MAX_LOOKAHEAD = 32  # scratch slots reserved for speculative steps (rows 1.. of ``step``)


class PolicyBase:
    """What every policy behind the ``ExpertPolicy`` interface shares: the model (its config has
    state_dim / action_dim / prefix_dim / max_prefix_tokens), the normalisers and control rate it
    was trained with, and the checks on what callers pass in. ``ExpertPolicy`` and the chunked
    baseline (``arvla_eval.chunk_policy.ChunkPolicy``) build on it, so the node gets the same
    errors for the same bad input whichever policy it runs."""

    config: Any  # the model's config dataclass (ExpertConfig, ChunkConfig)

    def __init__(self, model: torch.nn.Module, *, state_norm: Normalizer,
                 target_norm: Normalizer, control_rate_hz: float, model_id: str = "",
                 joint_names: Sequence[str] = (), device: str | torch.device = "cpu"):
        self.config = c = model.config
        if state_norm.dim != c.state_dim or target_norm.dim != c.action_dim:
            raise ValueError(f"normaliser dims (state {state_norm.dim}, target {target_norm.dim}) "
                             f"disagree with config (state_dim {c.state_dim}, action_dim "
                             f"{c.action_dim})")
        if control_rate_hz <= 0:
            raise ValueError(f"control_rate_hz must be > 0, got {control_rate_hz}")
        if joint_names and len(joint_names) != c.action_dim:
            raise ValueError(f"{len(joint_names)} joint_names for action_dim {c.action_dim}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.state_dim, self.action_dim, self.prefix_dim = c.state_dim, c.action_dim, c.prefix_dim
        self.control_rate_hz = float(control_rate_hz)
        self.model_id = model_id
        self.joint_names = list(joint_names)
        self.state_norm, self.target_norm = state_norm, target_norm

    def _checked_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """``tokens`` as an (N, prefix_dim) array, 1 <= N <= max_prefix_tokens, all finite."""
        tokens = np.asarray(tokens)
        c = self.config
        if tokens.ndim != 2 or tokens.shape[1] != c.prefix_dim or not (
                1 <= tokens.shape[0] <= c.max_prefix_tokens):
            raise ValueError(f"prefix tokens must be (N, {c.prefix_dim}) with 1 <= N <= "
                             f"{c.max_prefix_tokens}, got {tokens.shape}")
        if not np.isfinite(tokens).all():
            raise ValueError("prefix tokens contain NaN/inf")
        return tokens

    def _checked_state(self, state: np.ndarray, lookahead: int) -> np.ndarray:
        """``state`` as a finite (state_dim,) float64 array; ``lookahead`` in
        [1, MAX_LOOKAHEAD + 1]."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.state_dim,):
            raise ValueError(f"state must have shape ({self.state_dim},), got {state.shape}")
        if not np.isfinite(state).all():
            raise ValueError(f"state contains NaN/inf: {state}")
        if not 1 <= lookahead <= MAX_LOOKAHEAD + 1:
            raise ValueError(f"lookahead must be in [1, {MAX_LOOKAHEAD + 1}], got {lookahead}")
        return state


class ExpertPolicy(PolicyBase):
    """Autoregressive action expert with a long-lived memory (see docs/CONTRACTS.md)."""

    config: ExpertConfig

    def __init__(self, model: ARExpert, *, state_norm: Normalizer, target_norm: Normalizer,
                 control_rate_hz: float, model_id: str = "", joint_names: Sequence[str] = (),
                 device: str | torch.device = "cpu"):
        super().__init__(model, state_norm=state_norm, target_norm=target_norm,
                         control_rate_hz=control_rate_hz, model_id=model_id,
                         joint_names=joint_names, device=device)
        c = self.config
        self.cache = HybridKVCache(c.n_layer, c.n_head, c.head_dim, c.window, c.max_prefix_tokens,
                                   MAX_LOOKAHEAD, device=self.device)
        # normalised previous action target (what the step token sees when use_prev_action);
        # zeros at an episode start, exactly as the training data builds it
        self._prev = np.zeros(c.action_dim, np.float32)
        self._onnx = None  # set by use_onnx()
        self._ensemble = 1
        # multi-token predictions of the last committed steps: step index -> (K, A) normalised
        self._plans: dict[int, np.ndarray] = {}

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "cpu") -> "ExpertPolicy":
        """Load a checkpoint written by ``checkpoint.save_checkpoint``; CheckpointError on any
        problem (missing / corrupt files, pickle formats, config or shape mismatch)."""
        from arvla_action_expert.checkpoint import load_checkpoint

        ck = load_checkpoint(path, device=device)
        return cls(ck.model, state_norm=ck.state_norm, target_norm=ck.target_norm,
                   control_rate_hz=ck.meta.control_rate_hz, model_id=ck.meta.model_id,
                   joint_names=ck.meta.joint_names, device=device)

    @classmethod
    def build_untrained(cls, config: ExpertConfig, *, seed: int = 0, control_rate_hz: float = 20.0,
                        model_id: str = "", joint_names: Sequence[str] = ()) -> "ExpertPolicy":
        """Random weights and identity normalisation: for wiring tests and demos only."""
        log.warning("ExpertPolicy.build_untrained: random weights (seed %d), actions are "
                    "meaningless", seed)
        torch.manual_seed(seed)
        model = ARExpert(config)
        return cls(model, state_norm=Normalizer.identity(config.state_dim),
                   target_norm=Normalizer.identity(config.action_dim),
                   control_rate_hz=control_rate_hz, model_id=model_id, joint_names=joint_names)

    def quantize(self) -> None:
        """Dynamic int8 weights for every Linear (activations stay float): ~3x faster steps on
        CPU, where one step is bound by reading ~70 MB of fp32 weights. Inference only; the
        agreement with fp32 is reported by bench/expert_step.py and checked in test/core."""
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices
            self.model = quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)

    def use_onnx(self, *, int8: bool = True, threads: int = 1) -> None:
        """Run ``step`` through ONNX Runtime (``onnx_step.OnnxStep``), int8 weights by default:
        one graph call per step instead of ~90 torch ops. The prefix encoder stays in torch
        (it runs once per refresh). Needs the ``onnxruntime`` and ``onnx`` packages."""
        from arvla_action_expert.onnx_step import OnnxStep

        self._onnx = OnnxStep(self.model, self.cache, int8=int8, threads=threads)

    @property
    def ensemble_steps(self) -> int:
        return self._ensemble

    @ensemble_steps.setter
    def ensemble_steps(self, n: int) -> None:
        """Execute, for step t, the mean of the predictions for t made at steps t-n+1 .. t
        (multi-token prediction: token s predicts s .. s+K-1). 1 = the token's own prediction
        only (plain AR); at most the model's predict_steps K. Every prediction is a target
        relative to the state at t (delta actions) or absolute, so they average as they are."""
        K = self.config.predict_steps
        if not 1 <= int(n) <= K:
            raise ValueError(f"ensemble_steps must be in [1, predict_steps={K}], got {n}")
        self._ensemble = int(n)

    # ---- memory -------------------------------------------------------------------------------

    @property
    def cache_fill(self) -> int:
        return self.cache.fill

    @property
    def cache_capacity(self) -> int:
        return self.cache.capacity

    @property
    def prefix_capture_step(self) -> int | None:
        """Capture step of the prefix in the slot (None = no prefix)."""
        return self.cache.capture_step

    def reset(self) -> None:
        """Clear the rolling memory and the prefix slot (new episode)."""
        self.cache.reset()
        self._prev = np.zeros(self.action_dim, np.float32)
        self._plans.clear()

    def refresh_prefix(self, tokens: np.ndarray, capture_step: int) -> None:
        """Encode backbone tokens (N, prefix_dim) once; later steps attend to them.

        ValueError for tokens of the wrong shape, non-finite tokens, or tokens so large that
        the encoder overflows (NaN/inf keys or values): the prefix in use then stays."""
        tokens = self._checked_tokens(tokens)
        t = torch.as_tensor(tokens, dtype=torch.float32, device=self.device).unsqueeze(0)
        cap = torch.tensor([int(capture_step)], device=self.device)
        with torch.inference_mode():
            kv, _ = self.model.encode_prefix(t, cap)
            try:
                self.cache.set_prefix(kv, int(capture_step))
            except CacheError as err:
                raise ValueError(f"{err} (largest |token| {float(np.abs(tokens).max()):.3g})") from err

    def clear_prefix(self) -> None:
        """Run without a prefix from now on (action-only); the step memory is kept."""
        self.cache.clear_prefix()

    # ---- acting -------------------------------------------------------------------------------

    def step(self, state: np.ndarray, step_index: int, lookahead: int = 1) -> np.ndarray:
        """Action for ``step_index`` (committed to memory) plus ``lookahead - 1`` speculative
        continuations; (lookahead, action_dim) float64 absolute targets in real units."""
        state = self._checked_state(state, lookahead)
        if lookahead > 1 and self.state_dim != self.action_dim:
            raise ValueError(f"lookahead > 1 feeds actions back as states: needs state_dim "
                             f"({self.state_dim}) == action_dim ({self.action_dim})")
        out = np.empty((lookahead, self.action_dim), np.float64)
        with torch.inference_mode():
            out[0], self._prev = self._one(state, int(step_index), self._prev, commit=True)
            prev, s = self._prev, out[0]
            try:
                for j in range(1, lookahead):
                    out[j], prev = self._one(s, int(step_index) + j, prev, commit=False)
                    s = out[j]
            finally:
                self.cache.end_lookahead()
        return out

    def _one(self, state: np.ndarray, step_index: int, prev: np.ndarray, *, commit: bool
             ) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        xn = self.state_norm.normalize(state)
        self.cache.begin_step(step_index, commit=commit)
        try:
            if self._onnx is not None:
                out = torch.from_numpy(self._onnx(xn, step_index, prev)).view(self.model.out_shape)
            else:
                x = torch.as_tensor(xn, device=self.device).view(1, 1, -1)
                pos = torch.tensor([[step_index]], device=self.device)
                p = (torch.as_tensor(prev, device=self.device).view(1, 1, -1)
                     if c.use_prev_action else None)
                out = self.model.step(x, pos, self.cache, prev=p)[0, 0]
            plan = self.model.decode(out, all_steps=True).float().cpu().numpy()
            if not np.isfinite(plan).all():
                raise ValueError(f"model output has {int((~np.isfinite(plan)).sum())} NaN/inf "
                                 "values; step not stored in memory")
        except BaseException:
            self.cache.abort_step()
            raise
        self.cache.end_step()  # refuses (and undoes) a token with non-finite keys/values
        target_n = self._blend(step_index, plan.reshape(-1, c.action_dim), commit=commit)
        target = self.target_norm.denormalize(target_n)
        action = target + state if c.delta_actions else target
        return action, target_n.astype(np.float32)

    def _blend(self, step_index: int, plan: np.ndarray, *, commit: bool) -> np.ndarray:
        """The normalised target executed at ``step_index``: this token's own prediction
        ``plan[0]`` averaged with what the previous ``ensemble_steps - 1`` committed tokens
        predicted for this step (see ``ensemble_steps``). A committed plan is remembered."""
        n = self._ensemble
        if n == 1:
            return plan[0]
        rows = [plan[0]] + [self._plans[s][step_index - s]
                            for s in range(step_index - n + 1, step_index) if s in self._plans]
        if commit:
            self._plans[step_index] = plan
            for s in [s for s in self._plans if not step_index - n < s <= step_index]:
                del self._plans[s]
        return np.mean(rows, axis=0)

"""``ExpertPolicy``: the model + its Hybrid KV cache + normalisation, in real units.

This is the object the expert node (and offline replay, and evaluation) drives, one control tick
at a time: ``refresh_prefix`` whenever perception delivers, ``step`` every tick. Everything here
is ROS-free; the node converts messages and time stamps (see ``reanchor``) and calls this.

``step`` has two backends with the same results: the cache path (``HybridKVCache.begin_step`` /
``ARExpert.step`` / ``end_step``, host integers steer it) and ``StaticStep`` (``use_static_step``,
``use_cuda_graph``): the whole tick as device work of fixed shapes, which a CUDA graph replays
in one launch per row instead of ~100 small kernel launches and host syncs.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from typing import Any, Sequence

import numpy as np
import torch

from arvla_base.policy import PolicyCapabilities
from arvla_action_expert.cache import CacheError, HybridKVCache
from arvla_action_expert.model import ARExpert, ExpertConfig
from arvla_action_expert.normalize import Normalizer

__all__ = ["ExpertPolicy", "MAX_LOOKAHEAD", "PolicyBase", "StaticStep"]

log = logging.getLogger(__name__)

MAX_LOOKAHEAD = 32  # scratch slots reserved for speculative steps (rows 1.. of ``step``)
_NO_STEP = -(2 ** 62)  # step index of an empty plan slot (StaticStep): never a real step


class PolicyBase:
    """What every ``StepPolicy`` (``arvla_base.policy``) shares: the model (its config has
    state_dim / action_dim / prefix_dim / max_prefix_tokens), the normalisers and control rate it
    was trained with, and the checks on what callers pass in. ``ExpertPolicy`` and the chunked
    baseline (``arvla_baselines.chunk.ChunkPolicy``) build on it, so the node gets the same
    errors for the same bad input whichever policy it runs."""

    config: Any  # the model's config dataclass (ExpertConfig, ChunkConfig)
    capabilities: PolicyCapabilities = PolicyCapabilities()  # none beyond StepPolicy

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

    capabilities = PolicyCapabilities(ensembles=True, has_memory=True)

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
        self._static: StaticStep | None = None  # set by use_static_step() / use_cuda_graph()
        self._ensemble = 1
        self._ensemble_m = 0.0
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

        if self._static is not None:
            raise ValueError("the ONNX backend and the static step exclude each other")
        self._onnx = OnnxStep(self.model, self.cache, int8=int8, threads=threads)

    def use_static_step(self, *, bf16: bool = False, cuda_graph: bool = False) -> None:
        """Run ``step`` through ``StaticStep``: each tick as device work of fixed shapes (same
        results as the cache path: exactly in fp32). The memory is cleared: call it before an
        episode. ``bf16``: the decoder steps in bfloat16 (weights and KV cache; the prefix
        encoder stays fp32). ``cuda_graph``: capture the committed row and one speculative row
        as CUDA graphs and replay them (see ``use_cuda_graph``); without it the static functions
        run eagerly, on any device: that is how CI checks them on the CPU."""
        if self._onnx is not None:
            raise ValueError("the static step and the ONNX backend exclude each other")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the policy on a CUDA device, it is on "
                             f"'{self.device}'")
        model: ARExpert = self.model
        if bf16:
            model = copy.deepcopy(self.model).to(torch.bfloat16)
            model.bin_centers = self.model.bin_centers  # decoded in float32, as the fp32 path
        dtype = torch.bfloat16 if bf16 else torch.float32
        if self.cache.k.dtype != dtype:
            c = self.config
            self.cache = HybridKVCache(c.n_layer, c.n_head, c.head_dim, c.window,
                                       c.max_prefix_tokens, MAX_LOOKAHEAD, dtype=dtype,
                                       device=self.device)
        self._static = StaticStep(self, model, cuda_graph=cuda_graph)
        self.reset()

    def use_cuda_graph(self, *, bf16: bool = False) -> None:
        """The expert node's ``inference: cuda_graph`` (``cuda_graph_bf16``): ``step`` replays
        captured CUDA graphs (``use_static_step(cuda_graph=True)``). ValueError naming the
        ``device`` parameter when the policy is not on a CUDA device."""
        if self.device.type != "cuda":
            mode = "cuda_graph_bf16" if bf16 else "cuda_graph"
            raise ValueError(f"'{mode}' inference needs the policy on a CUDA device "
                             f"(parameter device: 'cuda' or 'cuda:N'), it is on '{self.device}'"
                             + ("" if torch.cuda.is_available() else
                                " and this torch/host has no CUDA"))
        self.use_static_step(bf16=bf16, cuda_graph=True)

    @property
    def ensemble_steps(self) -> int:
        return self._ensemble

    @ensemble_steps.setter
    def ensemble_steps(self, n: int) -> None:
        """Execute, for step t, the mean of the predictions for t made at steps t-n+1 .. t
        (multi-token prediction: token s predicts s .. s+K-1). 1 = the token's own prediction
        only (plain AR); at most the model's predict_steps K. Every prediction is averaged as
        a target relative to the state at t (delta actions) or absolute; a model trained with
        ``plan_anchor: current`` predicts relative to the state of the token that made the
        prediction, and is moved onto the state at t first (``_anchor``)."""
        K = self.config.predict_steps
        if not 1 <= int(n) <= K:
            raise ValueError(f"ensemble_steps must be in [1, predict_steps={K}], got {n}")
        self._ensemble = int(n)
        if self._static is not None:
            self._static.ensemble.fill_(int(n))

    @property
    def ensemble_m(self) -> float:
        return self._ensemble_m

    @ensemble_m.setter
    def ensemble_m(self, m: float) -> None:
        """Weights of the ensembled plans, ACT's temporal ensembling: ``exp(-m * i)`` with i = 0
        the oldest prediction, normalised. 0 = the plain mean (the default); m > 0 leans on
        the older plans, m < 0 on the newer ones. The chunked baseline's ``ensemble_m`` means
        the same while no step is skipped: it counts its predictions, this weighs their ages
        (a skipped step's missing plan leaves a gap in the weights)."""
        m = float(m)
        if not math.isfinite(m):
            raise ValueError(f"ensemble_m must be a finite number, got {m}")
        self._ensemble_m = m
        if self._static is not None:
            self._static.set_weights(m)

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
        if self._static is not None:
            self._static.reset()

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
        if self._static is not None:
            return self._static(state, int(step_index), lookahead)
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
        target_n = self._blend(step_index, plan.reshape(-1, c.action_dim), commit=commit,
                               anchor=self._anchor(state))
        target = self.target_norm.denormalize(target_n)
        action = target + state if c.delta_actions else target
        return action, target_n.astype(np.float32)

    def _anchor(self, state: np.ndarray) -> np.ndarray | None:
        """``state`` in target-normalised units (state / target std): what moves a plan anchored
        at one state (``plan_anchor: current``) onto another; None for other models."""
        if self.config.plan_anchor != "current":
            return None
        return (np.asarray(state, np.float64) / self.target_norm.std).astype(np.float32)

    def _blend(self, step_index: int, plan: np.ndarray, *, commit: bool,
               anchor: np.ndarray | None = None) -> np.ndarray:
        """The normalised target executed at ``step_index``: this token's own prediction
        ``plan[0]`` averaged with what the previous ``ensemble_steps - 1`` committed tokens
        predicted for this step (see ``ensemble_steps``). A committed plan is remembered, with
        ``anchor`` (``_anchor`` of this token's state) added, so that an older token s's
        prediction for this step reads ``plan_s[k] + anchor_s - anchor_now``: relative to the
        state now, as ``plan[0]`` is."""
        n = self._ensemble
        if n == 1:
            return plan[0]
        now = 0.0 if anchor is None else anchor
        older = [s for s in range(step_index - n + 1, step_index) if s in self._plans]
        rows = [plan[0]] + [self._plans[s][step_index - s] - now for s in older]
        if commit:
            self._plans[step_index] = plan + now
            for s in [s for s in self._plans if not step_index - n < s <= step_index]:
                del self._plans[s]
        if self._ensemble_m == 0.0:
            return np.mean(rows, axis=0)
        w = age_weights([0] + [step_index - s for s in older], self._ensemble_m,
                        self.config.predict_steps)
        return (np.einsum("i,ia->a", w, np.asarray(rows, np.float64)) / w.sum()).astype(np.float32)


def age_weights(ages: Sequence[int] | np.ndarray, m: float, predict_steps: int) -> np.ndarray:
    """Unnormalised ensemble weights of predictions made ``ages`` steps ago: ``exp(m * age)``,
    which normalised is ACT's ``exp(-m * i)`` counted from the oldest; scaled so that the
    largest possible one (ages 0 .. predict_steps - 1) is 1 and none overflows."""
    top = max(0.0, m * (predict_steps - 1))
    return np.exp(m * np.asarray(ages, np.float64) - top)


class StaticStep:
    """One tick of ``ExpertPolicy.step`` as device work of fixed shapes: CUDA-graph material.

    The host writes the state and [step index, ring slot] into two small device tensors (from
    pinned memory on CUDA: asynchronous copies), runs the committed row and ``lookahead - 1``
    speculative rows, and reads back one (rows, 2A + 2) float64 block: per row the action, the
    normalised target and two finite flags (output, keys/values). Everything in between stays on
    the device, in preallocated tensors updated in place: normalisation, ``ARExpert.step_static``
    (KV written at a device slot index, mask from ``HybridKVCache.mark_step``), decode, the
    ensemble blend over the plans of the last committed steps (a ring of K plans by step % K,
    summed oldest first like ``ExpertPolicy._blend``), denormalisation and feeding each row's
    action and target to the next row. Nothing calls ``.item()`` or changes a shape.

    With ``cuda_graph`` the committed row and one speculative row (it advances a device row
    counter) are captured once as two ``torch.cuda.CUDAGraph`` s and replayed (the second
    ``lookahead - 1`` times); otherwise the same two functions run eagerly. The graphs hold
    the addresses of the model's parameters and the cache tensors: after capture, load weights
    in place (``load_state_dict``), never replace them (no ``quantize``). Host bookkeeping
    (step order, ring head, fill) stays in the cache (``check_commit`` / ``commit_marked``); a
    non-finite row is undone on the host (``discard_marked``) and raised as by the cache path.
    """

    def __init__(self, policy: ExpertPolicy, model: ARExpert, *, cuda_graph: bool):
        c = self.config = policy.config
        self.model, self.cache = model, policy.cache
        self.device = policy.device
        self.dtype = self.cache.k.dtype  # the step's compute dtype (float32 or bfloat16)
        A, S, K = c.action_dim, c.state_dim, c.predict_steps
        rows = MAX_LOOKAHEAD + 1
        f32 = dict(dtype=torch.float32, device=self.device)
        f64 = dict(dtype=torch.float64, device=self.device)
        i64 = dict(dtype=torch.int64, device=self.device)
        pin = self.device.type == "cuda"
        # host ends of the two copies in and the one copy out per tick
        self.host_state = torch.zeros(S, dtype=torch.float64, pin_memory=pin)
        self.host_index = torch.zeros(2, dtype=torch.int64, pin_memory=pin)
        self.host_out = torch.zeros(rows, 2 * A + 2, dtype=torch.float64, pin_memory=pin)
        # device inputs
        self.state_in = torch.zeros(S, **f64)
        self.index_in = torch.zeros(2, **i64)  # [step index of the tick, its ring slot]
        def stat(a: np.ndarray) -> torch.Tensor:  # normalisers in float64, as Normalizer's
            return torch.as_tensor(np.asarray(a, np.float64), device=self.device)

        self.state_mean, self.state_std = stat(policy.state_norm.mean), stat(policy.state_norm.std)
        self.target_mean = stat(policy.target_norm.mean)
        self.target_std = stat(policy.target_norm.std)
        # carried between rows and ticks
        self.row = torch.zeros(1, **i64)       # row of the tick being computed (0 = committed)
        self.state = torch.zeros(S, **f64)     # the state that row is fed
        self.prev = torch.zeros(A, **f32)      # normalised target of the last committed row
        self.prev_row = torch.zeros(A, **f32)  # ... of the previous row of this tick
        self.plans = torch.zeros(K, K, A, **f32)  # committed plans (K, A) at step % K
        self.plan_steps = torch.full((K,), _NO_STEP, **i64)
        self.ensemble = torch.full((1,), policy.ensemble_steps, **i64)
        self.lags = torch.arange(K - 1, 0, -1, **i64)  # K-1 .. 1: the oldest plan first
        # ensemble weights (``age_weights``): of this token's plan[0], of each lag
        self.weight_now = torch.ones((), **f32)
        self.weights = torch.ones(K - 1, **f32)
        self.set_weights(policy.ensemble_m)
        self.out = torch.zeros(rows, 2 * A + 2, **f64)
        self.prev_host = np.zeros(A, np.float32)  # self.prev as of the last finished tick
        self.graphs: tuple[Any, Any] | None = None
        if cuda_graph:
            self._capture()

    def set_weights(self, m: float) -> None:
        """The ensemble weights for ``ExpertPolicy.ensemble_m`` = m (in place: graphs keep them)."""
        K = self.config.predict_steps
        w = age_weights(np.arange(K), m, K)   # by age: w[0] this token's plan, w[lag] older
        self.weight_now.fill_(float(w[0]))
        self.weights.copy_(torch.as_tensor(w[K - 1:0:-1].copy(), dtype=torch.float32))

    def reset(self) -> None:
        """A new episode: no previous target, no plans (in place: the graphs keep them)."""
        self.prev.zero_()
        self.prev_row.zero_()
        self.plans.zero_()
        self.plan_steps.fill_(_NO_STEP)
        self.prev_host = np.zeros(self.config.action_dim, np.float32)

    # ---- device work (fixed shapes; captured by _capture) --------------------------------------

    def _row(self, step: torch.Tensor, ring_slot: torch.Tensor, *, commit: bool) -> None:
        """One token at ``step`` written at ``ring_slot`` ((1,) int64 each); output row
        ``self.row`` of ``self.out``; feeds the next row."""
        c, cache = self.config, self.cache
        A = c.action_dim
        bias = cache.mark_step(ring_slot, step)  # (1, 1, 1, slots)
        slot = ring_slot + cache.n_prefix
        xn = ((self.state - self.state_mean) / self.state_std).float()  # Normalizer.normalize
        prev = self.prev if commit else self.prev_row
        out = self.model.step_static(
            xn.view(1, 1, -1).to(self.dtype), step.view(1, 1), cache.k, cache.v, bias, slot,
            prev=prev.view(1, 1, -1).to(self.dtype) if c.use_prev_action else None)
        plan = self.model.decode(out[0, 0].float(), all_steps=True).reshape(-1, A)  # (K, A)
        plan_ok = torch.isfinite(plan).all()
        kv_ok = (torch.isfinite(cache.k.index_select(3, slot)).all()
                 & torch.isfinite(cache.v.index_select(3, slot)).all())
        target_n = self._blend(step, plan, commit=commit) if c.predict_steps > 1 else plan[0]
        target = target_n.double() * self.target_std + self.target_mean  # Normalizer.denormalize
        action = target + self.state if c.delta_actions else target  # (A,) float64
        flags = torch.stack((plan_ok, kv_ok)).double()
        self.out.index_copy_(0, self.row, torch.cat((action, target_n.double(), flags))[None])
        if c.state_dim == A:  # lookahead feeds the action back as the next state
            self.state.copy_(action)
        self.prev_row.copy_(target_n)
        if commit:
            self.prev.copy_(target_n)

    def _blend(self, step: torch.Tensor, plan: torch.Tensor, *, commit: bool) -> torch.Tensor:
        """``ExpertPolicy._blend`` on the device: this token's plan[0] averaged with the rows
        for ``step`` of the plans of the previous ``ensemble - 1`` committed steps (moved onto
        this row's state for ``plan_anchor: current``, as there)."""
        K = self.config.predict_steps
        s = step - self.lags  # (K-1,) steps whose plan may cover ``step``, oldest first
        at = torch.remainder(s, K)
        valid = (self.plan_steps[at] == s) & (self.lags < self.ensemble)  # (K-1,)
        rows = self.plans[at, self.lags]  # (K-1, A)
        if self.config.plan_anchor == "current":
            now = (self.state / self.target_std).float()   # ExpertPolicy._anchor
            rows = rows - now
            plan_kept = plan + now
        else:
            plan_kept = plan
        rows = torch.where(valid[:, None], rows, 0.0)
        acc = self.weight_now * plan[0]
        for d in range(K - 1):  # one add per row, oldest first: at m = 0 the sum np.mean forms
            acc = acc + self.weights[d] * rows[d]
        target_n = acc / (self.weight_now + (self.weights * valid).sum())
        if commit:  # remembered only when blending, as ExpertPolicy._blend does
            here = torch.remainder(step, K)
            self.plans.index_copy_(0, here, plan_kept[None])
            self.plan_steps.index_copy_(0, here, torch.where(self.ensemble > 1, step, _NO_STEP))
        return target_n

    def _commit_row(self) -> None:
        self.cache.clear_scratch()  # the previous tick's speculative tokens
        self.row.zero_()
        self.state.copy_(self.state_in)
        self._row(self.index_in[0:1], self.index_in[1:2], commit=True)

    def _lookahead_row(self) -> None:
        self.row.add_(1)
        self._row(self.index_in[0:1] + self.row, self.row + (self.cache.window - 1), commit=False)

    def _capture(self) -> None:
        """Warm up on a side stream (allocator, cuBLAS, the RoPE table), then capture both rows.
        The warm-up writes into the memory: the policy resets after this."""
        dev = self.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                self._commit_row()
                self._lookahead_row()
        torch.cuda.current_stream(dev).wait_stream(side)
        commit, look = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.no_grad():
            with torch.cuda.graph(commit):
                self._commit_row()
            with torch.cuda.graph(look):  # own pool: nothing it reuses can be the other's
                self._lookahead_row()
        torch.cuda.current_stream(dev).synchronize()
        self.graphs = (commit, look)

    # ---- host side ------------------------------------------------------------------------------

    def __call__(self, state: np.ndarray, step_index: int, lookahead: int) -> np.ndarray:
        """``ExpertPolicy.step`` for a checked ``state``: (lookahead, action_dim) float64."""
        cache, A = self.cache, self.config.action_dim
        head = cache.check_commit(step_index)
        self.host_state.numpy()[:] = state
        self.host_index.numpy()[:] = (step_index, head)
        with torch.no_grad():
            self.state_in.copy_(self.host_state, non_blocking=True)
            self.index_in.copy_(self.host_index, non_blocking=True)
            if self.graphs is not None:
                self.graphs[0].replay()
                for _ in range(lookahead - 1):
                    self.graphs[1].replay()
            else:
                self._commit_row()
                for _ in range(lookahead - 1):
                    self._lookahead_row()
            got = self.host_out[:lookahead]
            got.copy_(self.out[:lookahead], non_blocking=True)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
        res = got.numpy().copy()
        ok = (res[:, 2 * A] > 0) & (res[:, 2 * A + 1] > 0)
        if not ok[0]:
            self._undo_commit(step_index, head)
            self._raise(res[0], 0)
        cache.commit_marked(step_index)
        self.prev_host = res[0, A:2 * A].astype(np.float32)
        if not ok.all():
            cache.discard_marked(None)
            self._raise(res[int(np.argmin(ok))], int(np.argmin(ok)))
        return res[:, :A]

    def _undo_commit(self, step_index: int, head: int) -> None:
        """The committed row was not finite: the memory, plans and previous target as before."""
        self.cache.discard_marked(head)
        K = self.config.predict_steps
        with torch.no_grad():
            self.plan_steps[step_index % K] = _NO_STEP
            self.prev.copy_(torch.from_numpy(self.prev_host))

    def _raise(self, row: np.ndarray, j: int) -> None:
        A = self.config.action_dim
        if row[2 * A] <= 0:
            raise ValueError(f"model output of row {j} has NaN/inf values; step not stored in "
                             "memory")
        raise CacheError(f"the keys/values of row {j} are not finite; step not stored")

"""Training the expert: stage 1 action-only, stage 2 with prefixes and sampled staleness.

    arvla train --config config/expert_tiny.yaml --stage 1 --out runs/s1
    arvla train --config config/expert_tiny.yaml --stage 2 --init runs/s1 --out runs/s2
    torchrun --nproc_per_node=2 -m arvla.commands.train --config ... --stage 1 --out runs/s1
    arvla train ... --device cuda --bf16     # one GPU, bfloat16 autocast (default --device auto)

Stage 1 learns "kinematic syntax" from state/action windows alone. Stage 2 starts from a stage-1
checkpoint (``--init``: weights, normalisers and bins) and teaches the decoder to read the prefix:
H history tokens that do not see it, then C chunk tokens that do, at a sampled delay (see
``data.SampleBuilder``). With some probability the chunk may not look at the history either
(``history_drop``), so the model cannot ignore the prefix by extrapolating the history.

AdamW, linear warmup then cosine decay; checkpoints (with optimiser state) go to ``--out`` and
``--resume`` continues from there.

Devices (``--device auto|cpu|cuda[:N]``, ``resolve_device``): batches are built on the host (in a
background thread on CUDA, pinned, copied asynchronously; the same seeded sequence as on the
CPU), ``--bf16`` runs forward and loss under ``torch.autocast`` in bfloat16. Under torchrun each
rank takes LOCAL_RANK's GPU with NCCL, or stays on the CPU with gloo. Checkpoints hold CPU
tensors whatever the device: they load anywhere.
"""

from __future__ import annotations

import gc
import logging
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Protocol

import torch
from tqdm import tqdm

from arvla_base.config import ConfigError, require, to_dict
from arvla_base.training import (Distributed, OptimConfig, ValidationCurve, autocast,
                                 device_batches, load_train_config, loss_trend, lr_at,
                                 make_optimizer, optimizer_step, resolve_device, show_progress,
                                 to_device)
from arvla_action_expert.bins import fit_bins
from arvla_action_expert.checkpoint import (CheckpointError, CheckpointMeta, load_checkpoint,
                                            save_checkpoint)
from arvla_action_expert.data import (SAMPLE_BY, EpisodeSource, InMemoryEpisodes,
                                      NpzEpisodeDir, SampleBuilder, SampleSpec, episode_summary,
                                      synthetic_episodes)
from arvla_action_expert.model import ARExpert, ExpertConfig, PrefixBatch
from arvla_action_expert.normalize import Normalizer

__all__ = ["DataConfig", "Distributed", "ModelDims", "OptimConfig", "SyntheticConfig",
           "TrainConfig", "TrainResult", "ValidationCurve", "autocast", "build_source",
           "check_data_matches_model", "device_batches", "evaluate", "load_train_config",
           "loss_trend", "lr_at", "make_optimizer", "optimizer_step", "resolve_device",
           "show_progress", "to_device", "train", "validation_batches", "validation_loss"]

log = logging.getLogger(__name__)


@dataclass
class SyntheticConfig:
    """Used when ``data.path`` is empty: ``data.synthetic_episodes`` (tests, demos)."""

    episodes: int = 64
    steps: int = 64
    n_tokens: int = 4
    frame_every: int = 8
    n_goals: int = 4
    noise: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("episodes", "steps", "n_tokens", "frame_every", "n_goals"):
            require(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")
        require(self.noise >= 0, "noise", self.noise, "must be >= 0")


@dataclass
class DataConfig:
    path: str = ""               # directory of .npz episodes; "" = synthetic episodes
    history: int = 8             # H: history steps before the chunk (stage 2), no prefix
    chunk: int = 8               # C: steps that see the prefix (stage 2)
    max_staleness: int = 4       # delays d sampled in [0, max_staleness] (stage 2)
    history_drop: float = 0.1    # P(chunk tokens may not attend to history) per sample;
    #                              stream mode: P(a sample's memory is cut to a random horizon)
    prefix_mode: str = "chunk"   # stage 2: "chunk" (history without prefix + chunk with one
    #                              frame, as the paper) | "stream" (every step sees the newest
    #                              arrived frame, exactly as the KV cache runs at inference)
    frame_drop: float = 0.0      # stream: P(a frame never arrives) -> longer staleness seen
    stage1_length: int = 0       # window length in stage 1 (0 = history + chunk)
    sample_by: str = "episode"   # a sample's episode drawn "episode": every episode alike, or
    #                              "step": in proportion to its length (every step alike)
    state_noise: float = 0.0     # std of Gaussian noise added to the step tokens' input states
    #                              (normalised units) in training; targets and anchors stay
    #                              the clean ones, so a token learns where the arm is to be
    #                              from a state read a little off, as in closed loop
    val_path: str = ""           # held-out .npz episodes (other seeds than path's): the loss on
    #                              them every val_every steps, in val_curve.json beside the
    #                              checkpoint ("" = none)
    val_batches: int = 8         # fixed held-out batches of batch_size per point
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        require(self.history >= 0, "history", self.history, "must be >= 0")
        require(self.chunk >= 1, "chunk", self.chunk, "must be >= 1")
        require(self.max_staleness >= 0, "max_staleness", self.max_staleness, "must be >= 0")
        require(0 <= self.history_drop <= 1, "history_drop", self.history_drop, "must be in [0, 1]")
        require(self.stage1_length >= 0, "stage1_length", self.stage1_length, "must be >= 0")
        require(self.prefix_mode in ("chunk", "stream"), "prefix_mode", self.prefix_mode,
                "must be 'chunk' or 'stream'")
        require(0 <= self.frame_drop < 1, "frame_drop", self.frame_drop, "must be in [0, 1)")
        require(self.sample_by in SAMPLE_BY, "sample_by", self.sample_by,
                f"must be one of {list(SAMPLE_BY)}")
        require(0 <= self.state_noise < 10, "state_noise", self.state_noise, "must be in [0, 10)")
        require(self.val_batches >= 1, "val_batches", self.val_batches, "must be >= 1")


@dataclass
class TrainConfig:
    model: ExpertConfig = field(default_factory=ExpertConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    log_every: int = 50          # progress-bar / log refresh, in steps
    save_every: int = 0          # checkpoint every this many steps (0 = only at the end)
    val_every: int = 0           # held-out loss (data.val_path) every this many steps (0 = at
    #                              the end only)
    num_threads: int = 0         # torch intra-op threads (0 = torch's default)

    def __post_init__(self) -> None:
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require(self.save_every >= 0, "save_every", self.save_every, "must be >= 0")
        require(self.val_every >= 0, "val_every", self.val_every, "must be >= 0")
        require(self.num_threads >= 0, "num_threads", self.num_threads, "must be >= 0")


@dataclass
class TrainResult:
    losses: list[float]          # loss of every step taken in this run
    step: int                    # optimiser steps in total (across resumes)
    path: pathlib.Path | None    # checkpoint written
    val: ValidationCurve = field(default_factory=ValidationCurve)  # held-out loss (val_path)


# --------------------------------------------------------------------------------------------


class ModelDims(Protocol):
    """Data-facing sizes of a policy config (``ExpertConfig``, the baseline's ``ChunkConfig``)."""

    state_dim: int
    action_dim: int
    prefix_dim: int
    max_prefix_tokens: int


def build_source(path: str, synthetic: SyntheticConfig, dims: ModelDims) -> EpisodeSource:
    """The ``.npz`` episodes in ``path``, or (``path`` empty) synthetic episodes sized for
    ``dims``: the expert and the chunked baseline train on exactly the same data."""
    if path:
        return NpzEpisodeDir(path)
    s = synthetic
    return InMemoryEpisodes(synthetic_episodes(
        s.episodes, steps=s.steps, state_dim=dims.state_dim, prefix_dim=dims.prefix_dim,
        n_tokens=s.n_tokens, frame_every=s.frame_every, n_goals=s.n_goals, noise=s.noise,
        seed=s.seed))


def check_data_matches_model(builder: SampleBuilder, c: ModelDims, *,
                             prefix: Literal["ignored", "optional", "required"]) -> None:
    """Config and data must agree; name the model key that disagrees. ``prefix``: whether the
    frame tokens are not used (expert stage 1), checked when present (the chunked baseline,
    which may also run without them) or must be present (expert stage 2)."""
    for key, have in (("state_dim", builder.state_dim), ("action_dim", builder.action_dim)):
        if getattr(c, key) != have:
            raise ConfigError(f"model.{key}: config says {getattr(c, key)}, the episodes have "
                              f"{have}")
    shape = builder.prefix_shape
    if prefix == "ignored":
        return
    if shape is None:
        if prefix == "required":
            raise ConfigError("stage 2 needs episodes with frame_tokens, all are empty")
        return
    n, d = shape
    if d != c.prefix_dim:
        raise ConfigError(f"model.prefix_dim: config says {c.prefix_dim}, frames have {d}")
    if n > c.max_prefix_tokens:
        raise ConfigError(f"model.max_prefix_tokens: config says {c.max_prefix_tokens}, "
                          f"frames have {n} tokens")


def step_mask(batch: dict[str, torch.Tensor], history_drop: float,
              g: torch.Generator | None) -> torch.Tensor:
    """(B, T, T): keys must be real steps (padding hidden); optionally cut chunk->history
    (chunk-mode batches) or, in a stream batch, every query's memory to a random horizon of
    1..T steps, so the expert also learns to act from the prefix with little history."""
    valid = batch["valid"]
    B, T = valid.shape
    eye = torch.eye(T, dtype=torch.bool, device=valid.device)
    mask = valid.unsqueeze(1).expand(B, T, T) | eye
    if history_drop <= 0:
        return mask
    drop = torch.rand(B, generator=g) < history_drop  # (B,)
    if "chunk" in batch:
        chunk = batch["chunk"]
        cut = drop[:, None, None] & chunk.unsqueeze(2) & ~chunk.unsqueeze(1)  # query chunk, key hist
        return mask & ~cut
    if "assign" in batch:
        horizon = torch.randint(1, T + 1, (B,), generator=g)
        horizon = torch.where(drop, horizon, T + 1)  # (B,)
        age = torch.arange(T).view(T, 1) - torch.arange(T).view(1, T)  # query t, key s: t - s
        mask = mask & (age.unsqueeze(0) < horizon.view(B, 1, 1))
    return mask


def add_state_noise(batch: dict[str, torch.Tensor], std: float, g: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    """``DataConfig.state_noise``: the input states read ``std`` (normalised units) off, the
    targets, anchors and everything else as built. std 0 draws nothing (batches unchanged)."""
    if std <= 0:
        return batch
    noise = torch.randn(batch["states"].shape, generator=g, dtype=batch["states"].dtype)
    return {**batch, "states": batch["states"] + std * noise}


def batch_forward(model: ARExpert, batch: dict[str, torch.Tensor], mask: torch.Tensor, *,
                  forward: torch.nn.Module | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``forward``: the module to call (a DistributedDataParallel wrapper of ``model``)."""
    prefix = None
    if "tokens" in batch:
        prefix = PrefixBatch(batch["tokens"], batch["capture"], batch["assign"])
    prev = batch["prev"] if model.config.use_prev_action else None
    fn = forward if forward is not None else model
    return fn(batch["states"], batch["positions"], prev=prev, prefix=prefix, step_mask=mask)


def batch_loss(model: ARExpert, batch: dict[str, torch.Tensor], mask: torch.Tensor, *,
               forward: torch.nn.Module | None = None) -> torch.Tensor:
    out, aux = batch_forward(model, batch, mask, forward=forward)
    loss = model.loss(out, batch["target"], batch["weight"], batch.get("anchor"))
    if aux is not None and "aux_target" in batch:
        err = (aux[:, 0] - batch["aux_target"]).abs().mean(-1)  # (B, aux_chunk)
        w = batch["aux_valid"]
        loss = loss + model.config.aux_loss_weight * (err * w).sum() / w.sum().clamp_min(1)
    return loss


@torch.no_grad()
def evaluate(model: ARExpert, batch: dict[str, torch.Tensor], *, use_prefix: bool = True
             ) -> float:
    """Mean |decoded target - target| (normalised units) over the tokens that count: chunk
    tokens of a stage-2 batch (with or without showing the prefix), else all valid tokens."""
    was = model.training
    model.eval()
    b = dict(batch)
    if not use_prefix:
        for k in ("tokens", "capture", "assign"):
            b.pop(k, None)
    mask = step_mask(b, 0.0, None)
    out, _ = batch_forward(model, b, mask)
    err = (model.decode(out) - batch["target"]).abs().mean(-1)  # (B, T)
    w = batch["chunk"].float() if "chunk" in batch else batch["weight"]
    model.train(was)
    return float((err * w).sum() / w.sum().clamp_min(1))


def validation_batches(cfg: TrainConfig, stage: int, source: EpisodeSource,
                       state_norm: Normalizer, target_norm: Normalizer
                       ) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """``cfg.data.val_batches`` fixed batches (and masks, no history cut) of held-out episodes
    ``source``, normalised with the training normalisers (a checkpoint's, or the trainer's
    ``SampleBuilder``'s), drawn like the stage's training batches from their own seeded
    generator: every point of a curve (and every run with the same seed) sees the same
    samples."""
    c, d = cfg.model, cfg.data
    val = SampleBuilder(source, delta_actions=c.delta_actions, state_norm=state_norm,
                        target_norm=target_norm, anchors=c.plan_anchor == "current")
    check_data_matches_model(val, c, prefix="required" if stage == 2 else "ignored")
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7_919)
    spec = SampleSpec(d.history, d.chunk, d.max_staleness, c.aux_chunk,
                      prefix_mode=d.prefix_mode, frame_drop=d.frame_drop)
    out = []
    for _ in range(d.val_batches):
        batch = (val.stage1_batch(cfg.optim.batch_size, d.stage1_length or (d.history + d.chunk), g)
                 if stage == 1 else val.stage2_batch(cfg.optim.batch_size, spec, g))
        out.append((batch, step_mask(batch, 0.0, None)))
    return out


@torch.no_grad()
def validation_loss(model: ARExpert, batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
                    device: torch.device, bf16: bool = False) -> float:
    """The training loss (eval mode) averaged over held-out ``batches``."""
    was = model.training
    model.eval()
    total = 0.0
    for batch, mask in batches:
        with autocast(device, bf16):
            total += float(batch_loss(model, to_device(batch, device), mask.to(device)))
    model.train(was)
    return total / len(batches)


@dataclass
class _Start:
    """Where a training run starts: the model and the sample builder (with its normalisers), the
    step and optimiser state to continue from, and the checkpoint they came from (if any)."""

    model: ARExpert
    builder: SampleBuilder
    step: int = 0
    optimizer_state: dict[str, Any] | None = None
    loaded: Any = None  # checkpoint.LoadedCheckpoint


def _starting_point(cfg: TrainConfig, stage: int, source: EpisodeSource,
                    out_dir: pathlib.Path | None, *, init: str | pathlib.Path | None,
                    resume: bool) -> _Start:
    """Resume ``out_dir`` (same stage), start from ``init`` (weights, normalisers, bins), or
    build a new model (normalisers and bins fit on ``source``); the data checked against it."""
    c = cfg.model
    prefix_use: Literal["ignored", "required"] = "required" if stage == 2 else "ignored"
    start_step, opt_state, loaded = 0, None, None
    if resume:
        if out_dir is None:
            raise ConfigError("--resume needs --out (the checkpoint to continue)")
        loaded = load_checkpoint(out_dir, expect=c, load_optimizer=True)
        if loaded.meta.stage != stage:
            raise CheckpointError(f"{out_dir}: is a stage-{loaded.meta.stage} checkpoint, "
                                  f"cannot resume stage {stage}")
        start_step, opt_state = loaded.meta.step, loaded.optimizer_state
    elif init is not None:
        loaded = load_checkpoint(init, expect=c)
    if loaded is not None:
        model = loaded.model
        builder = SampleBuilder(source, delta_actions=c.delta_actions,
                                state_norm=loaded.state_norm, target_norm=loaded.target_norm,
                                anchors=c.plan_anchor == "current", sample_by=cfg.data.sample_by)
    else:
        torch.manual_seed(cfg.seed)
        model = ARExpert(c)
        builder = SampleBuilder(source, delta_actions=c.delta_actions,
                                anchors=c.plan_anchor == "current", sample_by=cfg.data.sample_by)
        check_data_matches_model(builder, c, prefix=prefix_use)
        if c.head == "binned":
            model.bin_centers.copy_(fit_bins(builder.all_targets(), c.n_bins, seed=cfg.seed))
    check_data_matches_model(builder, c, prefix=prefix_use)
    return _Start(model, builder, start_step, opt_state, loaded)


def _checkpoint_meta(cfg: TrainConfig, stage: int, source: EpisodeSource, loaded: Any,
                     perception: Mapping[str, Any] | None) -> CheckpointMeta:
    """What the checkpoint records about its data: model_id, rate, joints, stage, the largest
    staleness it was trained on, and the perception settings (see ``train``)."""
    d = cfg.data
    summary = episode_summary(source)
    if perception is None and loaded is not None and loaded.meta.model_id == str(summary["model_id"]):
        perception = loaded.meta.perception
    return CheckpointMeta(model_id=str(summary["model_id"]),
                          control_rate_hz=float(summary["control_rate_hz"]),
                          joint_names=list(summary["joint_names"]), stage=stage,
                          max_staleness=0 if stage == 1 else d.max_staleness + d.chunk - 1 + (
                              d.history if d.prefix_mode == "stream" else 0),
                          perception=dict(perception or {}))


def train(cfg: TrainConfig, *, stage: int, out: str | pathlib.Path | None,
          source: EpisodeSource | None = None, init: str | pathlib.Path | None = None,
          resume: bool = False, progress: bool = True,
          perception: Mapping[str, Any] | None = None, device: str = "cpu",
          bf16: bool = False, val_source: EpisodeSource | None = None) -> TrainResult:
    """Run stage ``stage`` for ``cfg.optim.max_steps`` steps in total; save to ``out``.

    ``device``: "auto", "cpu", "cuda" or "cuda:N" (``resolve_device``); ``bf16``: forward and
    loss under bfloat16 autocast. The batches are the same on every device.

    ``perception``: the settings of the perception backbone that made the data's prefixes
    (``arvla_perception.config.token_settings``), recorded in the checkpoint's metadata so that
    bring-up starts the perception the expert was trained on. None: those recorded in ``init`` /
    the resumed checkpoint when its model_id is the data's, else none are recorded.

    ``val_source``: held-out episodes (default: ``cfg.data.val_path``'s, if set): their loss
    every ``cfg.val_every`` steps and after the last, logged, returned and written to
    ``val_curve.json`` in ``out``. The training batches are the same with or without them.
    """
    if stage not in (1, 2):
        raise ConfigError(f"stage: must be 1 or 2, got {stage!r}")
    dist = Distributed.from_env()
    if dist.enabled and cfg.optim.batch_size % dist.world_size:
        raise ConfigError(f"optim.batch_size: {cfg.optim.batch_size} does not split evenly over "
                          f"{dist.world_size} processes")
    dev = resolve_device(device, dist)
    dist.init(dev)
    progress = progress and dist.is_main
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    c = cfg.model
    source = source if source is not None else build_source(cfg.data.path, cfg.data.synthetic, c)
    out_dir = pathlib.Path(out) if out is not None else None
    start = _starting_point(cfg, stage, source, out_dir, init=init, resume=resume)
    model, builder, start_step = start.model, start.builder, start.step
    model.to(dev).train()
    opt = make_optimizer(model, cfg.optim, fused=True if dev.type == "cuda" else None)
    if start.optimizer_state is not None:
        opt.load_state_dict(start.optimizer_state)  # moves the state to the parameters' device
    d = cfg.data
    spec = SampleSpec(d.history, d.chunk, d.max_staleness, c.aux_chunk,
                      prefix_mode=d.prefix_mode, frame_drop=d.frame_drop)
    length = d.stage1_length or (d.history + d.chunk)
    meta = _checkpoint_meta(cfg, stage, source, start.loaded, perception)
    if val_source is None and d.val_path:
        val_source = NpzEpisodeDir(d.val_path)
    val_batches = []
    if val_source is not None and dist.is_main:   # on the device once, not at every point
        val_batches = [(to_device(b, dev), m.to(dev)) for b, m in validation_batches(
            cfg, stage, val_source, builder.state_norm, builder.target_norm)]
    curve = ValidationCurve(cfg.val_every)

    forward: torch.nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # stage 1 leaves the prefix encoder (and the aux head) without gradients
        forward = DistributedDataParallel(  # broadcasts rank 0's weights
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=True)

    def save(step: int) -> pathlib.Path | None:
        if out_dir is None or not dist.is_main:
            return None
        meta.step = step
        return save_checkpoint(out_dir, model, state_norm=builder.state_norm,
                               target_norm=builder.target_norm, meta=meta,
                               train_config=to_dict(cfg), optimizer=opt)

    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_step)
    if c.dropout > 0:   # dropout draws from torch's global generator: seeded like the batches
        torch.manual_seed(cfg.seed * 1_000_003 + start_step + stage)

    def host_batches() -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """This rank's slice of each step's global batch and mask, built on the CPU in order."""
        for _ in range(start_step, cfg.optim.max_steps):
            batch = (builder.stage1_batch(cfg.optim.batch_size, length, g) if stage == 1
                     else builder.stage2_batch(cfg.optim.batch_size, spec, g))
            mask = step_mask(batch, d.history_drop if stage == 2 else 0.0, g)
            yield dist.shard(add_state_noise(batch, d.state_noise, g), mask)

    losses: list[float] = []
    path = None
    bar = tqdm(range(start_step, cfg.optim.max_steps), desc=f"stage {stage}",
               disable=not progress, initial=start_step, total=cfg.optim.max_steps,
               mininterval=1.0)
    t0 = time.monotonic()
    batches = device_batches(host_batches(), dev)
    try:
        for step, (batch, mask) in zip(bar, batches):
            with autocast(dev, bf16):
                loss = batch_loss(model, batch, mask, forward=forward)
            optimizer_step(model, opt, loss, step, cfg.optim)
            losses.append(dist.mean(loss.item(), dev))
            show_progress(bar, losses, step, cfg.log_every, cfg.optim)
            if val_batches and curve.due(step, cfg.optim.max_steps):
                curve.add(step + 1, validation_loss(model, val_batches, dev, bf16))
                log.info("stage %d step %d: held-out loss %.4f (training %.4f)", stage, step + 1,
                         curve.losses[-1], sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:]))
            if cfg.save_every and (step + 1) % cfg.save_every == 0:
                path = save(step + 1)
    finally:
        batches.close()  # stops the batch thread
    bar.close()
    path = save(cfg.optim.max_steps) or path
    if path is not None:
        curve.write(path, stage=stage)
    if dist.enabled:
        # The DDP reducer holds gloo work objects; free it (and its reference cycles) while the
        # process group is alive: left to interpreter shutdown it can abort the process
        # ("terminate called without an active exception", seen once in CI on rank 1).
        del forward
        gc.collect()
        torch.distributed.barrier()  # the checkpoint is complete before any rank returns
    log.info("stage %d: %d steps in %.1f s on %s%s%s", stage, len(losses), time.monotonic() - t0,
             dev, " (bf16 autocast)" if bf16 else "", f", {curve.summary()}" if curve.losses else "")
    return TrainResult(losses, cfg.optim.max_steps, path, curve)

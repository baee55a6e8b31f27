"""Training the chunked baseline: samples from the expert's ``SampleBuilder`` (same episodes,
same normalisation), the shared training loop (``arvla_base.training``), checkpoints."""

from __future__ import annotations

import logging
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from tqdm import tqdm

from arvla_base.config import to_dict
from arvla_action_expert.data import (EpisodeSource, NpzEpisodeDir, SampleBuilder,
                                      episode_summary)
from arvla_action_expert.reanchor import sample_staleness
from arvla_action_expert.train import build_source, check_data_matches_model
from arvla_base.training import (ValidationCurve, autocast, device_batches, make_optimizer,
                                 optimizer_step, resolve_device, show_progress, to_device)

from arvla_baselines.chunk.configuration import ChunkTrainConfig
from arvla_baselines.chunk.modeling import ChunkMeta, ChunkTransformer, chunk_loss, save_chunk_checkpoint

log = logging.getLogger("arvla_baselines.chunk")


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


@dataclass
class ChunkTrainResult:
    losses: list[float]
    val_l1: float                # L1 (normalised units) on a fresh batch of the training
    #                              episodes, eval mode (held-out demonstrations: ``val``)
    seconds: float
    path: pathlib.Path | None
    val: ValidationCurve = field(default_factory=ValidationCurve)  # held-out loss (val_path)


def train_chunk(cfg: ChunkTrainConfig, *, out: str | pathlib.Path | None,
                source: EpisodeSource | None = None, progress: bool = True,
                device: str = "cpu", bf16: bool = False,
                val_source: EpisodeSource | None = None) -> ChunkTrainResult:
    """AdamW with linear warmup + cosine (the expert's schedule, ``train.lr_at``) on L1.
    ``device`` / ``bf16`` as for the expert (``train.train``): same batches on every device,
    the checkpoint holds CPU tensors. ``val_source``: held-out episodes (default:
    ``cfg.data.val_path``'s, if set), their loss every ``cfg.val_every`` steps and after the
    last (``val_curve.json`` in ``out``), as for the expert."""
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
    if val_source is None and d.val_path:
        val_source = NpzEpisodeDir(d.val_path)
    val_batches = []
    if val_source is not None:
        held_out = SampleBuilder(val_source, delta_actions=False, state_norm=builder.state_norm,
                                 target_norm=builder.target_norm)
        check_data_matches_model(held_out, c, prefix="optional")
        vg = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7_919)
        val_batches = [to_device(chunk_batch(held_out, o.batch_size, c.chunk, d.max_staleness,
                                             0.0, vg), dev)   # on the device once
                       for _ in range(d.val_batches)]
    curve = ValidationCurve(cfg.val_every)

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
            if val_batches and curve.due(step, o.max_steps):
                curve.add(step + 1, sum(evaluate_chunk(model, b) for b in val_batches)
                          / len(val_batches))
                log.info("chunk baseline step %d: held-out loss %.4f", step + 1, curve.losses[-1])
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
        curve.write(path)
    log.info("chunk baseline: %d steps in %.1f s on %s%s, loss %.4f -> %.4f, L1 %.4f on a "
             "fresh training batch%s", len(losses), seconds, dev, " (bf16 autocast)" if bf16 else "",
             losses[0], losses[-1], val, f", {curve.summary()}" if curve.losses else "")
    return ChunkTrainResult(losses, val, seconds, path, curve)


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



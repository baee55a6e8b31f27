"""The held-out loss during training (``data.val_path`` / ``val_every``, issue #15: a fair
training budget for every policy is read off a curve, not guessed).

The curve must not change training (the same batches, loss for loss), must be the loss the saved
checkpoint has on those held-out batches, and must reach the checkpoint directory and the
command line for the AR expert and the chunked baseline alike.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
import torch

from arvla_action_expert.checkpoint import load_checkpoint
from arvla_action_expert.data import InMemoryEpisodes, synthetic_episodes
from arvla_action_expert.train import (TrainConfig, ValidationCurve, train, validation_batches,
                                       validation_loss)
from arvla_base.config import load_config
from arvla_base.episode import save_episode_npz

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _cfg(steps: int, every: int) -> TrainConfig:
    cfg = load_config(TrainConfig, ROOT / "config" / "expert_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=steps, warmup_steps=5)
    return dataclasses.replace(cfg, val_every=every)


def _held_out(cfg: TrainConfig, n: int = 12) -> InMemoryEpisodes:
    """Episodes of the training distribution drawn with another seed (other 'demonstrations')."""
    s = cfg.data.synthetic
    return InMemoryEpisodes(synthetic_episodes(
        n, steps=s.steps, state_dim=cfg.model.state_dim, prefix_dim=cfg.model.prefix_dim,
        n_tokens=s.n_tokens, frame_every=s.frame_every, n_goals=s.n_goals, noise=s.noise,
        seed=s.seed + 1))


def test_curve_points_are_due_every_n_steps_and_at_the_end():
    curve = ValidationCurve(every=10)
    assert [s + 1 for s in range(25) if curve.due(s, 25)] == [10, 20, 25]
    assert [s + 1 for s in range(25) if ValidationCurve().due(s, 25)] == [25]
    curve.add(10, 0.5)
    curve.add(20, 0.3)
    curve.add(25, 0.4)
    assert curve.best() == (20, 0.3)
    assert "best 0.3000 at step 20" in curve.summary()


def test_expert_held_out_loss_leaves_training_alone_and_is_the_checkpoints(tmp_path):
    cfg = _cfg(40, every=20)
    held_out = _held_out(cfg)
    plain = train(cfg, stage=1, out=None, progress=False)
    res = train(cfg, stage=1, out=tmp_path / "s1", progress=False, val_source=held_out)
    assert res.losses == plain.losses  # the same batches: the curve only reads
    assert plain.val.losses == []
    assert res.val.steps == [20, 40]
    assert res.val.losses[1] < res.val.losses[0]  # it learns what generalises here
    doc = json.loads((tmp_path / "s1" / "val_curve.json").read_text())
    assert doc["steps"] == [20, 40] and doc["stage"] == 1
    assert doc["best_step"] == 40 and doc["best_loss"] == res.val.losses[1]
    # the last point is the saved checkpoint's loss on the same held-out batches
    loaded = load_checkpoint(tmp_path / "s1")
    batches = validation_batches(cfg, 1, held_out, loaded.state_norm, loaded.target_norm)
    assert validation_loss(loaded.model, batches, torch.device("cpu")) == pytest.approx(
        res.val.losses[-1], rel=1e-5)

    # stage 2 reads held-out prefixes, from data.val_path (a directory of .npz episodes)
    val_dir = tmp_path / "held_out"
    val_dir.mkdir()
    for i in range(len(held_out)):
        save_episode_npz(val_dir / f"ep_{i:03d}.npz", held_out[i])
    cfg2 = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_path=str(val_dir)))
    res2 = train(cfg2, stage=2, out=tmp_path / "s2", init=tmp_path / "s1", progress=False)
    assert res2.val.steps == [20, 40]
    assert json.loads((tmp_path / "s2" / "val_curve.json").read_text())["stage"] == 2


def test_chunk_baseline_held_out_curve(tmp_path):
    from arvla_baselines.chunk import ChunkTrainConfig, train_chunk

    cfg = load_config(ChunkTrainConfig, ROOT / "config" / "chunk_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=30, warmup_steps=2)
    cfg = dataclasses.replace(cfg, val_every=10)
    s = cfg.data.synthetic
    held_out = InMemoryEpisodes(synthetic_episodes(
        12, steps=s.steps, state_dim=cfg.model.state_dim, prefix_dim=cfg.model.prefix_dim,
        n_tokens=s.n_tokens, frame_every=s.frame_every, n_goals=s.n_goals, noise=s.noise,
        seed=s.seed + 1))
    plain = train_chunk(cfg, out=None, progress=False)
    res = train_chunk(cfg, out=tmp_path / "chunk", progress=False, val_source=held_out)
    assert res.losses == plain.losses
    assert res.val.steps == [10, 20, 30]
    assert res.val.losses[-1] < res.val.losses[0]
    doc = json.loads((tmp_path / "chunk" / "val_curve.json").read_text())
    assert doc["losses"] == res.val.losses


def test_cli_takes_held_out_data_and_names_a_missing_directory(tmp_path, capsys):
    from arvla.commands.train import cli_main
    from arvla.commands.train_baseline import cli_main as baseline_main

    expert = ["--config", str(ROOT / "config" / "expert_tiny.yaml"), "--stage", "1",
              "--no-progress", "--max-steps", "4", "--out", str(tmp_path / "s1")]
    assert cli_main(expert + ["--val-data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert baseline_main(["--config", str(ROOT / "config" / "chunk_tiny.yaml"), "--no-progress",
                          "--max-steps", "4", "--out", str(tmp_path / "c"),
                          "--val-data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert cli_main(["--config", str(ROOT / "config" / "expert_tiny.yaml"), "--stage", "1",
                     "--no-progress", "--max-steps", "4", "--val-every", "-1"]) == 2
    assert "val_every" in capsys.readouterr().err

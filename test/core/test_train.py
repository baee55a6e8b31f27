"""Training: both stages learn the synthetic task in seconds, stage 2 reads the prefix, CLI works.

The synthetic task (``data.synthetic_episodes``) switches the goal exactly when a frame is
captured, and only the frame shows the new goal: a model without the prefix must mispredict the
turn, so "stage 2 beats stage 1" is a real test that the prefix path (encoder, RoPE at capture
step, masks) carries information.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from arvla_base.config import ConfigError, load_config, to_dict
from arvla_action_expert.checkpoint import CheckpointError, load_checkpoint
from arvla_action_expert.data import (InMemoryEpisodes, SampleBuilder, SampleSpec,
                                      save_episode_npz, synthetic_episodes)
from arvla_action_expert.policy import ExpertPolicy
from arvla_action_expert.train import (TrainConfig, check_data_matches_model, evaluate,
                                       load_train_config, lr_at, train)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TINY = ROOT / "config" / "expert_tiny.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Stage 1 then stage 2 (from stage 1) on the tiny config; ~10 s on one core."""
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, TINY)
    d = tmp_path_factory.mktemp("train")
    r1 = train(cfg, stage=1, out=d / "s1", progress=False)
    r2 = train(cfg, stage=2, out=d / "s2", init=d / "s1", progress=False)
    return cfg, d, r1, r2


def _val_batch(ck, cfg):
    eps = synthetic_episodes(48, steps=48, state_dim=2, prefix_dim=8, seed=123)
    b = SampleBuilder(InMemoryEpisodes(eps), delta_actions=cfg.model.delta_actions,
                      state_norm=ck.state_norm, target_norm=ck.target_norm)
    spec = SampleSpec(cfg.data.history, cfg.data.chunk, cfg.data.max_staleness)
    return b.stage2_batch(256, spec, torch.Generator().manual_seed(7))


def test_loss_falls_well_below_its_start_in_both_stages(trained):
    _, _, r1, r2 = trained
    first, last = np.mean(r1.losses[:10]), np.mean(r1.losses[-20:])
    assert last < 0.75 * first, (first, last)  # from scratch: CE of 64 bins ~4.16 -> ~2.5
    # stage 2 starts from stage 1, which already knows the kinematics; what is left to gain is
    # the part of the loss that only the prefix explains (the turns after a goal switch)
    first, last = np.mean(r2.losses[:10]), np.mean(r2.losses[-20:])
    assert last < 0.9 * first, (first, last)


def test_stage2_beats_stage1_and_stage1_beats_a_constant(trained):
    cfg, d, _, _ = trained
    s1, s2 = load_checkpoint(d / "s1"), load_checkpoint(d / "s2")
    batch = _val_batch(s1, cfg)  # held-out episodes (another seed), same goals
    chunk = batch["chunk"].float()
    constant = float((batch["target"].abs().mean(-1) * chunk).sum() / chunk.sum())  # mean target
    e1 = evaluate(s1.model, batch, use_prefix=False)
    e2 = evaluate(s2.model, batch)
    e2_blind = evaluate(s2.model, batch, use_prefix=False)
    assert e1 < 0.9 * constant, (e1, constant)
    assert e2 < 0.8 * e1, (e2, e1)
    assert e2 < e2_blind, (e2, e2_blind)  # it is the prefix that helps, not more training


def test_checkpoint_metadata_and_policy_load(trained):
    _, d, _, _ = trained
    ck = load_checkpoint(d / "s2")
    assert ck.meta.stage == 2 and ck.meta.step == 300
    assert ck.meta.model_id == "synthetic" and ck.meta.joint_names == ["j0", "j1"]
    assert ck.meta.max_staleness == 3 + 8 - 1
    p = ExpertPolicy.from_checkpoint(d / "s2" / "model.safetensors")
    errs, hold = [], []
    for seed in (9, 10, 11):  # replay held-out episodes through the cached policy
        ep = synthetic_episodes(1, steps=40, state_dim=2, prefix_dim=8, seed=seed)[0]
        p.reset()
        frames = dict(zip(ep.frame_steps.tolist(), ep.frame_tokens))
        for t in range(ep.length):
            if t in frames:
                p.refresh_prefix(frames[t], t)
            a = p.step(ep.states[t], t, lookahead=2)
            errs.append(np.abs(a[0] - ep.actions[t]).mean())
            hold.append(np.abs(ep.states[t] - ep.actions[t]).mean())
    assert np.mean(errs) < 0.8 * np.mean(hold), (np.mean(errs), np.mean(hold))


def test_resume_continues_from_the_saved_step(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, TINY)
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=6)
    r = train(cfg, stage=1, out=tmp_path / "ck", progress=False)
    assert len(r.losses) == 6
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=10)
    r = train(cfg, stage=1, out=tmp_path / "ck", resume=True, progress=False)
    assert len(r.losses) == 4 and load_checkpoint(tmp_path / "ck").meta.step == 10
    with pytest.raises(CheckpointError, match="stage-1 checkpoint, cannot resume stage 2"):
        train(cfg, stage=2, out=tmp_path / "ck", resume=True, progress=False)


def test_init_with_a_different_model_config_names_the_field(tmp_path):
    cfg = load_config(TrainConfig, TINY)
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=2)
    train(cfg, stage=1, out=tmp_path / "a", progress=False)
    cfg.model = dataclasses.replace(cfg.model, n_embd=32)
    with pytest.raises(CheckpointError, match="n_embd: expected 32, checkpoint has 64"):
        train(cfg, stage=2, out=tmp_path / "b", init=tmp_path / "a", progress=False)


def test_config_unknown_key_is_a_config_error_naming_it(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["optim"]["learning_rate"] = 1e-3
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(TrainConfig, p)
    data = yaml.safe_load(TINY.read_text())
    data["model"]["n_head"] = 5
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="n_embd: must be divisible by n_head=5"):
        load_config(TrainConfig, p)


def test_data_dims_must_match_the_model_config():
    cfg = load_config(TrainConfig, TINY)
    cfg.model = dataclasses.replace(cfg.model, state_dim=3, action_dim=3)
    eps = InMemoryEpisodes(synthetic_episodes(2, steps=20, state_dim=2, prefix_dim=8))
    with pytest.raises(ConfigError, match="model.state_dim: config says 3, the episodes have 2"):
        train(cfg, stage=1, out=None, source=eps, progress=False)


def test_command_line_overrides_are_applied_and_validated():
    """``--data/--max-steps/--batch-size/--num-threads`` (shared with ``arvla eval
    train-baseline``) land in the config and are checked like the YAML, naming the key."""
    base = load_config(TrainConfig, TINY)
    cfg = load_train_config(TrainConfig, TINY, data="/some/eps", max_steps=7, batch_size=6,
                            num_threads=1)
    assert (cfg.data.path, cfg.optim.max_steps, cfg.optim.batch_size, cfg.num_threads) == (
        "/some/eps", 7, 6, 1)
    assert cfg.optim.lr == base.optim.lr and cfg.model == base.model  # the rest untouched
    assert load_train_config(TrainConfig, TINY) == base
    with pytest.raises(ConfigError, match="optim.batch_size: must be >= 1, got 0"):
        load_train_config(TrainConfig, TINY, batch_size=0)
    with pytest.raises(ConfigError, match="num_threads: must be >= 0, got -1"):
        load_train_config(TrainConfig, TINY, num_threads=-1)


def test_stage2_needs_frames_and_matching_prefix_dims():
    eps = InMemoryEpisodes(synthetic_episodes(2, steps=20, state_dim=2, prefix_dim=8))
    builder = SampleBuilder(eps, delta_actions=False)
    c = load_config(TrainConfig, TINY).model
    wide = dataclasses.replace(c, prefix_dim=16)
    check_data_matches_model(builder, wide, prefix="ignored")  # stage 1 never reads frames
    with pytest.raises(ConfigError, match="model.prefix_dim: config says 16, frames have 8"):
        check_data_matches_model(builder, wide, prefix="optional")
    no_frames = InMemoryEpisodes([dataclasses.replace(
        e, frame_tokens=e.frame_tokens[:0], frame_steps=e.frame_steps[:0]) for e in eps])
    bare = SampleBuilder(no_frames, delta_actions=False)
    check_data_matches_model(bare, c, prefix="optional")  # the baseline may run without frames
    with pytest.raises(ConfigError, match="stage 2 needs episodes with frame_tokens"):
        check_data_matches_model(bare, c, prefix="required")


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = load_config(TrainConfig, TINY).optim
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps + 1)]
    assert lrs[0] < lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr)
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_steps:], lrs[cfg.warmup_steps + 1:]))


def test_arvla_train_cli_end_to_end(tmp_path):
    """`arvla train` stage 1 then stage 2 on .npz episodes in tmp_path, in a subprocess."""
    data_dir = tmp_path / "episodes"
    data_dir.mkdir()
    for i, ep in enumerate(synthetic_episodes(6, steps=32, state_dim=2, prefix_dim=8)):
        save_episode_npz(data_dir / f"ep{i:03d}.npz", ep)
    cfg = to_dict(load_config(TrainConfig, TINY))
    cfg["optim"]["max_steps"] = 15
    cfg["optim"]["batch_size"] = 8
    cfg["num_threads"] = 1
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    base = [sys.executable, "-m", "arvla.cli", "train", "--config", str(cfg_path), "--no-progress"]
    r1 = subprocess.run(base + ["--stage", "1", "--data", str(data_dir),
                                "--out", str(tmp_path / "s1")], capture_output=True, text=True,
                        timeout=120)
    assert r1.returncode == 0, r1.stderr
    assert "stage 1: loss" in r1.stdout
    r2 = subprocess.run(base + ["--stage", "2", "--data", str(data_dir), "--init",
                                str(tmp_path / "s1"), "--out", str(tmp_path / "s2")],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert load_checkpoint(tmp_path / "s2").meta.stage == 2
    bad = subprocess.run(base + ["--stage", "2", "--data", str(data_dir), "--init",
                                 str(tmp_path / "nowhere")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "checkpoint not found" in bad.stderr


def test_state_noise_reads_the_input_states_off_and_nothing_else():
    """data.state_noise: only the step tokens' input states move, by the configured spread;
    targets and anchors stay clean; 0 draws nothing, so every other recipe's batches are the
    same as before the option existed."""
    from arvla_action_expert.train import DataConfig, add_state_noise

    eps = synthetic_episodes(8, steps=48, state_dim=2, prefix_dim=8, seed=5)
    b = SampleBuilder(InMemoryEpisodes(eps), delta_actions=True, anchors=True)
    batch = b.stage2_batch(64, SampleSpec(8, 8, 2), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    noisy = add_state_noise(batch, 0.2, g)
    moved = noisy["states"] - batch["states"]
    assert moved.std().item() == pytest.approx(0.2, rel=0.1) and abs(moved.mean().item()) < 0.02
    for key in batch.keys() - {"states"}:
        assert torch.equal(noisy[key], batch[key]), key
    before = g.get_state()
    assert add_state_noise(batch, 0.0, g) is batch and torch.equal(g.get_state(), before)
    with pytest.raises(ConfigError, match="state_noise"):
        DataConfig(state_noise=-0.1)


def test_sample_by_step_draws_episodes_in_proportion_to_their_length():
    """data.sample_by: 'episode' draws every episode alike (the default, as before); 'step' in
    proportion to its length, in both stages; anything else names the key."""
    from arvla_action_expert.train import DataConfig

    eps = synthetic_episodes(2, steps=30, state_dim=2, prefix_dim=8, seed=2)
    eps += synthetic_episodes(1, steps=120, state_dim=2, prefix_dim=8, seed=3)
    long_share = {}
    for how in ("episode", "step"):
        b = SampleBuilder(InMemoryEpisodes(eps), delta_actions=True, sample_by=how)
        g = torch.Generator().manual_seed(0)
        drawn = []
        for _ in range(15):
            s2 = b.stage2_batch(32, SampleSpec(8, 8, 2, prefix_mode="stream"), g)
            drawn += [int(e) for e in s2["episode"]]
            s1 = b.stage1_batch(32, 24, g)   # which episode: the one whose states the window holds
            for states in s1["states"]:
                drawn.append(next(e for e in range(3)
                                  if any(torch.equal(states[0], row) for row in b.states[e])))
        long_share[how] = float(np.mean(np.array(drawn) == 2))
    assert long_share["episode"] == pytest.approx(1 / 3, abs=0.05)
    assert long_share["step"] == pytest.approx(120 / 180, abs=0.05)
    with pytest.raises(ValueError, match="sample_by"):
        SampleBuilder(InMemoryEpisodes(eps), delta_actions=True, sample_by="task")
    with pytest.raises(ConfigError, match="sample_by"):
        DataConfig(sample_by="task")

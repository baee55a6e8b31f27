"""ACT-style chunked baseline: learning, checkpoints, execution modes, the ExpertPolicy interface."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from arvla_base.config import ConfigError, load_config
from arvla_action_expert.checkpoint import CheckpointError
from arvla_action_expert.data import InMemoryEpisodes, SampleBuilder, synthetic_episodes
from arvla_action_expert.policy import ExpertPolicy
from arvla_baselines.chunk import (ChunkConfig, ChunkExecConfig, ChunkPolicy, ChunkTrainConfig,
                                     ChunkTransformer, chunk_batch, ensemble_weights,
                                     evaluate_chunk, load_chunk_checkpoint, train_chunk,
                                     train_chunk_policy)

TINY = ChunkConfig(state_dim=2, action_dim=2, prefix_dim=8, max_prefix_tokens=8, chunk=6,
                   n_embd=32, n_head=4, n_enc_layer=1, n_dec_layer=1, ffn=64, dropout=0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, repo_root_module):
    """The tiny config trained on synthetic episodes (goal only visible in the frame tokens)."""
    torch.set_num_threads(1)
    cfg = load_config(ChunkTrainConfig, repo_root_module / "config" / "chunk_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=250)
    out = tmp_path_factory.mktemp("chunk") / "ckpt"
    result = train_chunk(cfg, out=out, progress=False)
    return cfg, result


@pytest.fixture(scope="module")
def repo_root_module():
    import pathlib

    return pathlib.Path(__file__).resolve().parents[2]


def test_learns_the_synthetic_task_and_beats_trivial_baselines(trained):
    cfg, result = trained
    k = 20
    first, last = np.mean(result.losses[:k]), np.mean(result.losses[-k:])
    assert last < 0.35 * first, (first, last)
    # held-out samples from episodes of another seed, against two trivial predictors in the
    # same normalised units: "stay where you are" and "repeat the mean target"
    val = synthetic_episodes(24, steps=48, state_dim=2, prefix_dim=8, frame_every=8, seed=99)
    policy = ChunkPolicy.from_checkpoint(result.path)
    builder = SampleBuilder(InMemoryEpisodes(val), delta_actions=False,
                            state_norm=policy.state_norm, target_norm=policy.target_norm)
    batch = chunk_batch(builder, 256, cfg.model.chunk, cfg.data.max_staleness, 0.0,
                        torch.Generator().manual_seed(3))
    model_l1 = evaluate_chunk(policy.model, batch)
    w = batch["valid"].float()
    hold = torch.as_tensor(policy.target_norm.normalize(policy.state_norm.denormalize(
        batch["states"].numpy())))[:, None, :]
    hold_l1 = float(((hold - batch["target"]).abs().mean(-1) * w).sum() / w.sum())
    zero_l1 = float((batch["target"].abs().mean(-1) * w).sum() / w.sum())
    print(f"L1 model {model_l1:.3f} hold {hold_l1:.3f} zero {zero_l1:.3f}")
    assert model_l1 < 0.7 * hold_l1 and model_l1 < 0.5 * zero_l1, (model_l1, hold_l1, zero_l1)
    # and it reads the prefix: without it the error grows (the goal is only in the tokens)
    no_prefix = dict(batch, token_valid=torch.zeros_like(batch["token_valid"]))
    assert evaluate_chunk(policy.model, no_prefix) > 1.3 * model_l1


def test_checkpoint_round_trip_and_exec_override(trained, tmp_path):
    cfg, result = trained
    a = ChunkPolicy.from_checkpoint(result.path)
    b = ChunkPolicy.from_checkpoint(result.path / "config.json")  # a file inside works too
    tokens = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    for p in (a, b):
        p.refresh_prefix(tokens, 0)
    np.testing.assert_array_equal(a.predict_chunk(np.array([0.1, -0.2])),
                                  b.predict_chunk(np.array([0.1, -0.2])))
    assert a.exec.mode == "chunk" and a.control_rate_hz == 20.0 and a.model_id == "synthetic"
    assert a.joint_names == ["j0", "j1"]
    te = ChunkPolicy.from_checkpoint(result.path, exec_config=ChunkExecConfig("temporal_ensemble"))
    assert te.exec.mode == "temporal_ensemble"
    doc = json.loads((result.path / "config.json").read_text())
    assert doc["format"] == "arvla-chunk/1" and doc["chunk"]["chunk"] == cfg.model.chunk


def test_corrupt_and_foreign_checkpoints_fail_clearly(trained, tmp_path):
    _, result = trained
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(result.path, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256"):
        load_chunk_checkpoint(bad)
    doc = json.loads((bad / "config.json").read_text())
    doc["weights_sha256"] = None
    (bad / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_chunk_checkpoint(bad)
    shape = tmp_path / "shape"
    shutil.copytree(result.path, shape)
    doc = json.loads((shape / "config.json").read_text())
    doc["chunk"]["n_embd"], doc["weights_sha256"] = 128, None
    (shape / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"expected shape"):
        load_chunk_checkpoint(shape)
    # the AR expert refuses a chunk checkpoint (and vice versa) naming the format
    with pytest.raises(CheckpointError, match="arvla-chunk/1"):
        ExpertPolicy.from_checkpoint(result.path)
    with pytest.raises(CheckpointError, match="not found"):
        load_chunk_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="pickle"):
        load_chunk_checkpoint(tmp_path / "x.pt")


def test_checkpoint_save_commits_at_config_and_rolls_forward(tmp_path):
    """Chunk checkpoints share the expert's commit protocol: a save cut between committing
    config.json and renaming the pending weights loads the NEW weights; a pending file from a
    save cut before its commit is ignored; no temp or pending files are left behind."""
    import shutil

    from arvla_action_expert.normalize import Normalizer
    from arvla_baselines.chunk import ChunkMeta, save_chunk_checkpoint

    def save(path, value):
        model = ChunkTransformer(TINY)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        return save_chunk_checkpoint(path, model, state_norm=Normalizer.identity(2),
                                     target_norm=Normalizer.identity(2),
                                     meta=ChunkMeta(step=int(value)),
                                     exec_config=ChunkExecConfig())

    def version(path):
        ck = load_chunk_checkpoint(path)
        return float(ck.model.head.weight[0, 0]), ck.meta.step

    live, other = save(tmp_path / "live", 1.0), save(tmp_path / "other", 2.0)
    assert sorted(p.name for p in live.iterdir()) == ["config.json", "model.safetensors"]
    shutil.copy(other / "config.json", live / "config.json")
    shutil.copy(other / "model.safetensors", live / "model.safetensors.pending")
    assert version(live) == (2.0, 2)
    (live / "model.safetensors.pending").replace(live / "model.safetensors")
    save(other, 3.0)
    shutil.copy(other / "model.safetensors", live / "model.safetensors.pending")
    assert version(live) == (2.0, 2)
    (live / "model.safetensors").write_bytes((live / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_chunk_checkpoint(live)


def test_ensemble_weights_hand_computed():
    w = ensemble_weights(3, 0.5)
    e = np.exp([0.0, -0.5, -1.0])
    np.testing.assert_allclose(w, e / e.sum())
    assert w[0] > w[1] > w[2]  # ACT: the oldest prediction weighs most for m > 0
    np.testing.assert_allclose(ensemble_weights(4, 0.0), 0.25)
    with pytest.raises(ValueError):
        ensemble_weights(0, 0.1)


class _Scripted(ChunkTransformer):
    """Chunk row i predicted at the n-th call = 100 * n + i in every dim (identity norms), so
    the ensemble arithmetic can be checked by hand."""

    def __init__(self, config: ChunkConfig):
        super().__init__(config)
        self.calls = 0

    def forward(self, states, tokens, token_valid=None):
        self.calls += 1
        rows = torch.arange(self.config.chunk, dtype=torch.float32) + 100.0 * self.calls
        return rows.view(1, -1, 1).expand(states.shape[0], -1, self.config.action_dim)


def _scripted_policy(mode: str, **kw) -> ChunkPolicy:
    cfg = dataclasses.replace(TINY, chunk=3)
    pol = ChunkPolicy.build_untrained(cfg, exec_config=ChunkExecConfig(mode, **kw))
    pol.model = _Scripted(cfg)
    return pol


def test_temporal_ensembling_matches_hand_computation():
    p = _scripted_policy("temporal_ensemble", ensemble_m=0.5)
    s = np.zeros(2)
    # step 0: chunk A (calls=1) = [100, 101, 102]
    np.testing.assert_allclose(p.step(s, 0)[:, 0], [100.0])
    # step 1: chunk B = [200, 201, 202]; step 1 gets A[1]=101 (oldest, w0) and B[0]=200 (w1)
    w = np.exp([0.0, -0.5])
    w /= w.sum()
    np.testing.assert_allclose(p.step(s, 1)[0, 0], w @ [101.0, 200.0])
    # step 2 with lookahead 2: C = [300..]; step 2 <- A[2], B[1], C[0]; step 3 <- B[2], C[1]
    out = p.step(s, 2, lookahead=2)[:, 0]
    w3 = np.exp([0.0, -0.5, -1.0])
    w3 /= w3.sum()
    np.testing.assert_allclose(out, [w3 @ [102.0, 201.0, 300.0], w @ [202.0, 301.0]])
    # step 3: A has expired (covers 0..2)
    np.testing.assert_allclose(p.step(s, 3)[0, 0], w3 @ [202.0, 301.0, 400.0])
    assert p.cache_fill == 3 and p.cache_capacity == 3


def test_chunk_mode_executes_open_loop_and_replans_every_exec_horizon():
    p = _scripted_policy("chunk", exec_horizon=2)
    s = np.zeros(2)
    rows = [p.step(s, k, lookahead=3)[:, 0] for k in range(5)]
    np.testing.assert_allclose(rows[0], [100, 101, 102])
    np.testing.assert_allclose(rows[1], [101, 102, 102])  # past the chunk end: hold its last row
    np.testing.assert_allclose(rows[2], [200, 201, 202])  # replanned after exec_horizon = 2
    np.testing.assert_allclose(rows[4], [300, 301, 302])
    assert p.model.calls == 3 and p.cache_fill == 1
    # a skipped tick beyond the chunk replans; reset forgets the chunk
    np.testing.assert_allclose(p.step(s, 9)[:, 0], [400])
    p.reset()
    np.testing.assert_allclose(p.step(s, 10)[:, 0], [500])


@pytest.mark.parametrize("mode", ["chunk", "temporal_ensemble"])
def test_interface_shapes_and_errors(mode):
    p = ChunkPolicy.build_untrained(TINY, joint_names=["a", "b"],
                                    exec_config=ChunkExecConfig(mode))
    assert (p.state_dim, p.action_dim, p.prefix_dim) == (2, 2, 8)
    assert p.cache_capacity == TINY.chunk  # a chunked head remembers one chunk
    out = p.step(np.zeros(2), 0, lookahead=1)  # no prefix: action-only
    assert out.shape == (1, 2) and out.dtype == np.float64 and np.isfinite(out).all()
    p.refresh_prefix(np.ones((3, 8), np.float32), capture_step=0)
    assert p.prefix_capture_step == 0
    for k in range(1, 10):
        out = p.step(np.full(2, 0.1 * k), k, lookahead=4)
        assert out.shape == (4, 2) and np.isfinite(out).all()
        assert 1 <= p.cache_fill <= p.cache_capacity
    p.clear_prefix()
    assert p.prefix_capture_step is None
    with pytest.raises(ValueError, match=r"state must have shape \(2,\)"):
        p.step(np.zeros(3), 10)
    with pytest.raises(ValueError, match="lookahead"):
        p.step(np.zeros(2), 10, lookahead=0)
    with pytest.raises(ValueError, match=r"prefix tokens must be \(N, 8\)"):
        p.refresh_prefix(np.ones((3, 7), np.float32), 0)
    with pytest.raises(ValueError, match="NaN"):
        p.refresh_prefix(np.full((3, 8), np.nan, np.float32), 0)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="n_embd"):
        ChunkConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="mode"):
        ChunkExecConfig(mode="diffusion")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exec_horizon"):
        ChunkPolicy.build_untrained(TINY, exec_config=ChunkExecConfig(exec_horizon=TINY.chunk + 1))
    bad = tmp_path / "c.yaml"
    bad.write_text("model: {chunk: 0}\n")
    with pytest.raises(ConfigError, match="model.chunk"):
        load_config(ChunkTrainConfig, bad)
    # data and model must agree
    eps = InMemoryEpisodes(synthetic_episodes(2, steps=16, state_dim=3, prefix_dim=8))
    with pytest.raises(ConfigError, match="model.state_dim"):
        train_chunk_policy(eps, ChunkTrainConfig(model=TINY), tmp_path / "x", progress=False)


def test_both_policies_are_step_policies_with_explicit_capabilities():
    """The node is typed against ``StepPolicy``; what a policy can do beyond it is declared."""
    from arvla_action_expert.model import ExpertConfig
    from arvla_base.policy import PolicyCapabilities, StepPolicy
    from arvla_eval.evaluate import node_params_for

    chunk = ChunkPolicy.build_untrained(TINY)
    expert = ExpertPolicy.build_untrained(ExpertConfig(state_dim=2, action_dim=2, prefix_dim=8))
    assert isinstance(chunk, StepPolicy) and isinstance(expert, StepPolicy)
    assert chunk.capabilities == PolicyCapabilities()
    assert expert.capabilities.ensembles and expert.capabilities.has_memory
    params = {"ensemble_steps": 4, "lookahead_steps": 3}
    assert node_params_for(expert, params) == params
    assert node_params_for(chunk, params) == {"ensemble_steps": 1, "lookahead_steps": 3}
    assert node_params_for(chunk, {**params, "ensemble_m": 0.1})["ensemble_m"] == 0.0
    assert node_params_for(expert, {**params, "ensemble_m": 0.1})["ensemble_m"] == 0.1

"""``model.dropout`` (issue #15: the AR expert over-fits its demonstrations): residual dropout
in training only. Inference -- whole-window forward and the cached step -- is exactly the
dropout-free model's with the same weights, old checkpoints load unchanged, and a training run
with dropout is reproducible from its seed."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch

from arvla_action_expert.model import ARExpert, ExpertConfig
from arvla_action_expert.train import TrainConfig, train
from arvla_base.config import ConfigError, load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _small(**kw) -> ExpertConfig:
    return ExpertConfig(state_dim=3, action_dim=3, prefix_dim=8, max_prefix_tokens=4, n_embd=32,
                        n_layer=2, n_head=4, ffn=64, window=8, head="regression", **kw)


def test_eval_mode_is_the_dropout_free_model():
    torch.manual_seed(0)
    plain = ARExpert(_small()).eval()
    dropped = ARExpert(_small(dropout=0.3))
    dropped.load_state_dict(plain.state_dict())   # no new tensors: old checkpoints load
    states = torch.randn(2, 6, 3)
    positions = torch.arange(6).repeat(2, 1)
    want, _ = plain(states, positions)
    dropped.train()
    a, _ = dropped(states, positions)
    b, _ = dropped(states, positions)
    assert not torch.equal(a, b)                  # training: random masks
    dropped.eval()
    got, _ = dropped(states, positions)
    assert torch.equal(got, want)


def test_dropout_is_validated():
    with pytest.raises(ConfigError, match="dropout"):
        _small(dropout=1.0)


def test_training_with_dropout_is_reproducible(tmp_path):
    cfg = load_config(TrainConfig, ROOT / "config" / "expert_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=12, warmup_steps=2)
    cfg.model = dataclasses.replace(cfg.model, dropout=0.2)
    s1 = train(cfg, stage=1, out=tmp_path / "s1", progress=False)
    first = train(cfg, stage=2, out=None, init=tmp_path / "s1", progress=False)
    torch.manual_seed(123)                        # whatever the global generator held before
    again = train(cfg, stage=2, out=None, init=tmp_path / "s1", progress=False)
    assert first.losses == again.losses
    plain = train(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dropout=0.0)),
                  stage=1, out=None, progress=False)
    assert plain.losses[0] != s1.losses[0]        # the masks change the first loss

"""Checkpoints: round trip, and every way a file can be wrong gives a clear CheckpointError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from arvla_action_expert.checkpoint import (CheckpointError, CheckpointMeta, load_checkpoint,
                                            save_checkpoint)
from arvla_action_expert.model import ARExpert, ExpertConfig
from arvla_action_expert.normalize import Normalizer
from arvla_action_expert.policy import ExpertPolicy

CFG = ExpertConfig(state_dim=3, action_dim=3, prefix_dim=4, max_prefix_tokens=3, n_embd=16,
                   n_layer=2, n_head=2, ffn=32, window=4, n_bins=8)


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = ARExpert(CFG)
    norm_s = Normalizer(np.array([1, 2, 3], np.float32), np.array([.5, .5, 2], np.float32))
    norm_t = Normalizer(np.zeros(3, np.float32), np.full(3, 0.1, np.float32))
    meta = CheckpointMeta(model_id="enc", control_rate_hz=50.0, joint_names=["a", "b", "c"],
                          stage=2, step=7)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 2, 3), torch.arange(2).view(1, 2))[0].sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck", model, state_norm=norm_s, target_norm=norm_t,
                           meta=meta, optimizer=opt)
    return path, model


def test_round_trip_restores_weights_stats_and_metadata(ckpt):
    path, model = ckpt
    ck = load_checkpoint(path, load_optimizer=True)
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert ck.meta == CheckpointMeta("enc", 50.0, ["a", "b", "c"], 2, 7)
    np.testing.assert_array_equal(ck.state_norm.std, [.5, .5, 2])
    assert ck.optimizer_state is not None and len(ck.optimizer_state["state"]) > 0
    torch.optim.AdamW(ck.model.parameters()).load_state_dict(ck.optimizer_state)
    p = ExpertPolicy.from_checkpoint(path)
    assert p.control_rate_hz == 50.0 and p.joint_names == ["a", "b", "c"] and p.model_id == "enc"
    assert list(path.glob(".*tmp")) == []  # no temp files left behind


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl"])
def test_pickle_formats_are_refused(tmp_path, suffix):
    f = tmp_path / f"model{suffix}"
    f.write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="refusing to load a pickle-based checkpoint"):
        load_checkpoint(f)
    with pytest.raises(CheckpointError, match="refusing"):
        ExpertPolicy.from_checkpoint(f)


def test_truncated_weights_give_a_clear_error(ckpt):
    path, _ = ckpt
    w = path / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_checkpoint(path)
    doc = json.loads((path / "config.json").read_text())
    doc["weights_sha256"] = None  # even without the checksum, the safetensors reader catches it
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="corrupt or truncated safetensors"):
        load_checkpoint(path)


def test_truncated_config_gives_a_clear_error(ckpt):
    path, _ = ckpt
    c = path / "config.json"
    c.write_text(c.read_text()[:40])
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(path)


def test_shape_mismatch_names_key_and_shapes(ckpt):
    path, _ = ckpt
    w = path / "model.safetensors"
    tensors = load_file(w)
    tensors["model.head.weight"] = torch.zeros(5, 16)
    save_file(tensors, w)
    doc = json.loads((path / "config.json").read_text())
    doc["weights_sha256"] = None
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError,
                       match=r"model\.head\.weight: expected shape \(24, 16\), got \(5, 16\)"):
        load_checkpoint(path)
    del tensors["model.head.weight"]
    save_file(tensors, w)
    with pytest.raises(CheckpointError, match=r"missing \['head.weight'\]"):
        load_checkpoint(path)


def test_config_mismatch_and_bad_config_values(ckpt):
    path, _ = ckpt
    import dataclasses

    with pytest.raises(CheckpointError, match="window: expected 8, checkpoint has 4"):
        load_checkpoint(path, expect=dataclasses.replace(CFG, window=8))
    doc = json.loads((path / "config.json").read_text())
    doc["expert"]["n_layers"] = 3
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="expert.n_layers"):
        load_checkpoint(path)


def test_missing_files(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    path, _ = ckpt
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(path)

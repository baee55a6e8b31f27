"""Training on a device: ``--device auto|cpu|cuda[:N]``, ``--bf16``, batches prefetched to the
device, device-independent checkpoints (issue #17, part 1).

The CPU runs the same code path as a GPU (resolve_device -> model.to -> batches through
``device_batches`` -> autocast -> checkpoint from CPU tensors); the background batch thread
that CUDA uses is forced on here and must not change a single loss. The CUDA tests (skipped
without a GPU) train there and compare with the CPU run.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import arvla_action_expert.train as train_mod
from arvla_base.config import ConfigError, load_config
from arvla_action_expert.checkpoint import load_checkpoint
from arvla_action_expert.policy import ExpertPolicy
from arvla_action_expert.train import (Distributed, TrainConfig, device_batches, resolve_device,
                                       train)

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAVE_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device")
STEPS = 30


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _cfg(steps: int = STEPS) -> TrainConfig:
    cfg = load_config(TrainConfig, ROOT / "config" / "expert_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=steps, warmup_steps=5)
    return cfg


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend the host has ``n`` GPUs (resolve_device only asks torch.cuda for counts)."""
    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return have


def test_resolve_device(fake_gpus):
    fake_gpus(0)
    assert resolve_device("cpu") == resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device: 'cuda', but torch .* sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="device: must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    fake_gpus(2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="GPU 2 requested"):
        resolve_device("cuda:2")
    rank1 = Distributed(world_size=2, rank=1, local_rank=1, local_world_size=2)
    assert resolve_device("auto", rank1) == resolve_device("cuda", rank1) == torch.device("cuda", 1)
    assert resolve_device("cpu", rank1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="pins one GPU, but torchrun started 2 ranks"):
        resolve_device("cuda:0", rank1)
    fake_gpus(1)  # more ranks than GPUs: auto keeps every rank on the CPU (gloo), cuda refuses
    assert resolve_device("auto", rank1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="GPU 1 requested"):
        resolve_device("cuda", rank1)


def test_distributed_reads_local_world_size(monkeypatch):
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Distributed.from_env() == Distributed(4, 3, 1, 2)


def test_prefetched_batches_are_the_sequential_ones():
    def host(n):
        g = torch.Generator().manual_seed(0)
        for _ in range(n):
            yield {"x": torch.randn(3, generator=g)}, torch.rand(2, generator=g)

    plain = list(device_batches(host(20), torch.device("cpu"), prefetch=0))
    threaded = list(device_batches(host(20), torch.device("cpu"), prefetch=2))
    assert len(plain) == len(threaded) == 20
    for (a, m), (b, n) in zip(plain, threaded):
        assert torch.equal(a["x"], b["x"]) and torch.equal(m, n)


def test_batch_thread_errors_reach_the_trainer_and_closing_stops_it():
    def broken():
        yield ({"x": torch.zeros(1)},)
        raise RuntimeError("episode 7 is corrupt")

    it = device_batches(broken(), torch.device("cpu"), prefetch=2)
    next(it)
    with pytest.raises(RuntimeError, match="episode 7 is corrupt"):
        next(it)

    def endless():
        while True:
            yield ({"x": torch.zeros(1)},)

    it = device_batches(endless(), torch.device("cpu"), prefetch=2)
    next(it)
    it.close()  # the trainer stops early (an exception, or max_steps reached)
    import threading

    assert not any(t.name == "arvla-batches" and t.is_alive() for t in threading.enumerate())


def test_device_path_on_the_cpu_changes_no_loss(monkeypatch, tmp_path):
    """device='cpu' through the batch thread (forced on) = the plain CPU run, loss for loss; the
    checkpoint holds float32 CPU tensors and loads as a policy."""
    plain = train(_cfg(), stage=1, out=None, progress=False)
    monkeypatch.setattr(train_mod, "device_batches",
                        functools.partial(device_batches, prefetch=2))
    threaded = train(_cfg(), stage=1, out=tmp_path / "s1", progress=False, device="cpu")
    assert threaded.losses == plain.losses
    tensors = load_file(str(tmp_path / "s1" / "model.safetensors"))
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors.values())
    assert load_checkpoint(tmp_path / "s1", device="cpu").meta.step == STEPS


def test_bf16_autocast_trains_and_saves_float32(tmp_path):
    fp32 = train(_cfg(60), stage=1, out=None, progress=False, device="cpu")
    bf16 = train(_cfg(60), stage=1, out=tmp_path / "bf16", progress=False, device="cpu", bf16=True)
    assert np.mean(bf16.losses[-10:]) < 0.85 * np.mean(bf16.losses[:10])  # it learns
    assert bf16.losses[0] == pytest.approx(fp32.losses[0], rel=0.02)  # same batch, same weights
    tensors = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    p = ExpertPolicy.from_checkpoint(tmp_path / "bf16")
    assert np.isfinite(p.step(np.zeros(p.state_dim), 0)).all()


def test_chunk_baseline_trains_on_the_device_path(tmp_path):
    from arvla_baselines.chunk import ChunkPolicy, ChunkTrainConfig, train_chunk

    cfg = load_config(ChunkTrainConfig, ROOT / "config" / "chunk_tiny.yaml")
    cfg.optim = dataclasses.replace(cfg.optim, max_steps=20, warmup_steps=2)
    plain = train_chunk(cfg, out=None, progress=False)
    bf16 = train_chunk(cfg, out=tmp_path / "chunk", progress=False, device="cpu", bf16=True)
    assert bf16.losses[0] == pytest.approx(plain.losses[0], rel=0.02)
    assert np.isfinite(bf16.val_l1)
    p = ChunkPolicy.from_checkpoint(tmp_path / "chunk")
    assert np.isfinite(p.step(np.zeros(p.state_dim), 0)).all()


def test_cli_names_a_bad_device(capsys):
    from arvla.commands.train import cli_main

    rc = cli_main(["--config", str(ROOT / "config" / "expert_tiny.yaml"), "--stage", "1",
                   "--device", "tpu", "--no-progress"])
    assert rc == 2
    assert "device: must be auto, cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# On a CUDA device (skipped without one)


@needs_cuda
def test_cuda_training_follows_the_cpu_curve_and_the_checkpoint_loads_on_the_cpu(tmp_path):
    cpu = train(_cfg(60), stage=1, out=None, progress=False, device="cpu")
    gpu = train(_cfg(60), stage=1, out=tmp_path / "gpu", progress=False, device="cuda")
    # same batches and initial weights; the curves part only by float summation order
    np.testing.assert_allclose(gpu.losses[:20], cpu.losses[:20], rtol=2e-3, atol=2e-4)
    p = ExpertPolicy.from_checkpoint(tmp_path / "gpu", device="cpu")
    assert np.isfinite(p.step(np.zeros(p.state_dim), 0)).all()
    back = ExpertPolicy.from_checkpoint(tmp_path / "gpu", device="cuda")
    np.testing.assert_allclose(back.step(np.zeros(p.state_dim), 0),
                               ExpertPolicy.from_checkpoint(tmp_path / "gpu").step(
                                   np.zeros(p.state_dim), 0), atol=1e-4)


@needs_cuda
def test_cuda_bf16_training_learns(tmp_path):
    bf16 = train(_cfg(60), stage=1, out=tmp_path / "bf16", progress=False, device="cuda",
                 bf16=True)
    assert np.mean(bf16.losses[-10:]) < 0.85 * np.mean(bf16.losses[:10])
    model = load_checkpoint(tmp_path / "bf16", device="cpu").model
    assert model.state_in.weight.dtype == torch.float32

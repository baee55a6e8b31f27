"""Training beyond one process: torchrun + DDP (gloo on CPU) follows the single-process run."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    cfg = ROOT / "config" / "expert_tiny.yaml"
    steps = "60"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"

    def train(name: str) -> list[str]:  # the real training command, stage 1, one thread a process
        return ["-m", "arvla.commands.train", "--config", str(cfg), "--stage", "1",
                "--out", str(tmp_path / name), "--max-steps", steps, "--num-threads", "1",
                "--losses-json", str(tmp_path / f"{name}.losses.json"), "--no-progress"]

    single = subprocess.run([sys.executable, *train("single")], capture_output=True, text=True,
                            env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
                          *train("ddp")], capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = json.loads((tmp_path / "single.losses.json").read_text())
    b = json.loads((tmp_path / "ddp.losses.json").read_text())
    assert len(a) == len(b) == int(steps)
    # same global batches, gradients averaged over equal slices: the curves agree
    for i, (x, y) in enumerate(zip(a, b)):
        assert y == pytest.approx(x, rel=2e-3, abs=2e-4), f"step {i}: single {x:.6f} vs ddp {y:.6f}"
    assert sum(b[-10:]) / 10 < 0.85 * sum(b[:10]) / 10, "the DDP run must actually learn"
    # only rank 0 wrote the checkpoint, and it loads
    from arvla_action_expert.policy import ExpertPolicy

    assert ExpertPolicy.from_checkpoint(tmp_path / "ddp").state_dim == 2


def test_batch_must_split_evenly(monkeypatch):
    from arvla_base.config import ConfigError, load_config
    from arvla_action_expert.train import TrainConfig, train

    cfg = load_config(TrainConfig, ROOT / "config" / "expert_tiny.yaml")
    cfg.optim.batch_size = 31
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="optim.batch_size: 31 does not split evenly over 2"):
        train(cfg, stage=1, out=None, progress=False)

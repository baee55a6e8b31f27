"""Training throughput: one process vs `torchrun --nproc_per_node=N` (DDP, gloo on CPU).

    python bench/train_ddp.py [--config config/expert_tiny.yaml] [--steps 60] [--nproc 2]

Runs stage 1 on the config's data for the same number of steps with the same global batch:
(a) one process, 1 thread; (b) one process, N threads; (c) N processes x 1 thread (DDP).
Prints wall time per step and the speed-ups measured side by side in one run. Each run is the
real ``python -m arvla.commands.train`` command (it writes a checkpoint at the end, in a
temp directory).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/expert_tiny.yaml")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        def train(*launcher: str, threads: int) -> list[str]:  # `arvla train` stage 1, no bar
            return [*launcher, "-m", "arvla.commands.train", "--config", args.config,
                    "--stage", "1", "--out", f"{tmp}/out", "--max-steps", str(args.steps),
                    "--batch-size", str(args.batch), "--num-threads", str(threads), "--no-progress"]

        rows = [
            ("1 process x 1 thread", run(train(sys.executable, threads=1), env)),
            (f"1 process x {args.nproc} threads",
             run(train(sys.executable, threads=args.nproc), env)),
        ]
        torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                    "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
        rows.append((f"{args.nproc} processes x 1 thread (DDP)",
                     run(train(*torchrun, threads=1), env)))
    base = rows[0][1]
    print(f"\nstage-1 training, {args.steps} steps, global batch {args.batch}, {args.config} "
          "(wall time incl. process start)")
    print(f"{'setup':<32} {'total s':>8} {'ms/step':>8} {'speed-up':>9}")
    for name, t in rows:
        print(f"{name:<32} {t:8.1f} {1000 * t / args.steps:8.1f} {base / t:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

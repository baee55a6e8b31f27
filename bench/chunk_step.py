"""Benchmark: per-tick cost of the chunked baselines vs the AR expert, and baseline training time.

    python bench/chunk_step.py                  # paper/ACT size, 1 CPU thread
    python bench/chunk_step.py --size tiny --ticks 200

Per tick, as the expert node calls it (``policy.step(state, k, lookahead=3)``, numpy in/out,
normalisation included), after ``refresh_prefix`` with 49 tokens, random weights (speed does
not depend on their values), batch 1, one thread:

- ar: ``ExpertPolicy`` (config/expert_paper.yaml size: width 512, 4+4 layers, FFN 3200, W=100);
- chunk: ``ChunkPolicy`` mode "chunk" (config/chunk_act.yaml size, C=50): one forward every C
  ticks, the rest are table look-ups -- hence the p50/p99 split;
- chunk_te: mode "temporal_ensemble": one forward EVERY tick + the ensemble.

Then ``train_chunk`` steps/s at the given size (batch 32). Prints ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from arvla_action_expert.data import InMemoryEpisodes, synthetic_episodes
from arvla_action_expert.model import ExpertConfig
from arvla_action_expert.policy import ExpertPolicy
from arvla_action_expert.train import OptimConfig
from arvla_baselines.chunk import (ChunkConfig, ChunkDataConfig, ChunkExecConfig, ChunkPolicy,
                                     ChunkTrainConfig, train_chunk)

TOKENS = 49


def configs(size: str) -> tuple[ExpertConfig, ChunkConfig]:
    if size == "tiny":
        return (ExpertConfig(state_dim=7, action_dim=7, prefix_dim=64, max_prefix_tokens=64,
                             n_embd=64, n_layer=2, n_head=4, ffn=128, window=16, n_bins=64),
                ChunkConfig(state_dim=7, action_dim=7, prefix_dim=64, max_prefix_tokens=64,
                            chunk=8, n_embd=64, n_head=4, n_enc_layer=2, n_dec_layer=1, ffn=128))
    return (ExpertConfig(state_dim=7, action_dim=7, prefix_dim=384, max_prefix_tokens=64,
                         n_embd=512, n_layer=4, n_head=8, ffn=3200, window=100, n_bins=500,
                         delta_actions=True),
            ChunkConfig(state_dim=7, action_dim=7, prefix_dim=384, max_prefix_tokens=64,
                        chunk=50, n_embd=512, n_head=8, n_enc_layer=4, n_dec_layer=1, ffn=3200))


def time_ticks(policy, prefix_dim: int, ticks: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    policy.reset()
    policy.refresh_prefix(rng.normal(size=(TOKENS, prefix_dim)).astype(np.float32), 0)
    out = []
    for k in range(ticks + 5):
        if k and k % 10 == 0:  # perception at 1/10 of the control rate
            policy.refresh_prefix(rng.normal(size=(TOKENS, prefix_dim)).astype(np.float32), k)
        s = rng.normal(scale=0.1, size=7)
        t0 = time.perf_counter()
        policy.step(s, k, 3)
        if k >= 5:
            out.append(time.perf_counter() - t0)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("paper", "tiny"), default="paper")
    ap.add_argument("--ticks", type=int, default=150)
    ap.add_argument("--train-steps", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    ecfg, ccfg = configs(args.size)
    ar = ExpertPolicy.build_untrained(ecfg)
    chunk = ChunkPolicy.build_untrained(ccfg)
    te = chunk.with_exec(ChunkExecConfig(mode="temporal_ensemble"))
    rows = {}
    for name, pol, dim in (("ar", ar, ecfg.prefix_dim), ("chunk", chunk, ccfg.prefix_dim),
                           ("chunk_te", te, ccfg.prefix_dim)):
        lat = time_ticks(pol, dim, args.ticks) * 1e3
        rows[name] = lat
    print(f"per-tick latency, {args.size} size, 1 thread, {args.ticks} ticks, lookahead 3 (ms):")
    print(f"{'policy':10s} {'mean':>8s} {'p50':>8s} {'p99':>8s} {'max':>8s}  params")
    params = {"ar": ar.model.num_params(), "chunk": chunk.model.num_params(),
              "chunk_te": te.model.num_params()}
    for name, lat in rows.items():
        print(f"{name:10s} {lat.mean():8.2f} {np.percentile(lat, 50):8.2f} "
              f"{np.percentile(lat, 99):8.2f} {lat.max():8.2f}  {params[name] / 1e6:.1f} M")
    ar_mean = rows["ar"].mean()
    print(f"mean ratio vs ar: chunk {rows['chunk'].mean() / ar_mean:.2f}x, chunk_te "
          f"{rows['chunk_te'].mean() / ar_mean:.2f}x; worst tick (p99) vs ar: chunk "
          f"{np.percentile(rows['chunk'], 99) / np.percentile(rows['ar'], 99):.2f}x")

    eps = InMemoryEpisodes(synthetic_episodes(16, steps=120, state_dim=7, prefix_dim=ccfg.prefix_dim,
                                              n_tokens=TOKENS, frame_every=10))
    cfg = ChunkTrainConfig(model=ccfg, optim=OptimConfig(max_steps=args.train_steps, warmup_steps=2,
                                                         batch_size=32),
                           data=ChunkDataConfig(max_staleness=4))
    res = train_chunk(cfg, out=None, source=eps, progress=False)
    print(f"chunk baseline training: {args.train_steps / res.seconds:.2f} steps/s "
          f"(batch 32, {TOKENS} tokens, 1 thread) -> "
          f"{res.seconds / args.train_steps * 1e3:.0f} ms/step")


if __name__ == "__main__":
    main()

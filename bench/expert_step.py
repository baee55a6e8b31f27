"""Benchmark: one expert step with the Hybrid KV cache vs recomputing the whole window.

    python bench/expert_step.py                 # paper size, W in {25, 50, 100}, 1 CPU thread
    python bench/expert_step.py --iters 100 --windows 100

Paper size: width 512, 4 layers, 8 heads, FFN 3200, 7 joints, 500 bins, 49 prefix tokens
(a 7x7 feature map). Random weights: speed does not depend on their values.

Rows (all one thread, batch 1, p50 / p99 in ms):
- recompute fp32: ``ARExpert.forward`` over the last W steps + prefix, last output kept
  (what a policy without a cache pays every tick);
- cached fp32: ``ExpertPolicy.step`` (numpy in, numpy out, normalisation, decode included);
- cached int8: the same with torch dynamic int8 Linear weights (``ExpertPolicy.quantize``);
- onnx fp32 / onnx int8: the step as one ONNX Runtime call (``ExpertPolicy.use_onnx``), fp32 or
  per-channel int8 weights.
Each variant's agreement with torch fp32 is printed (max |logit| difference, share of identical
argmax bins over W + 20 steps).
The ratio recompute / cached is the speed-up of the cache. Target: >= 10x at W=100 and
p50 < 1 ms per cached step.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from arvla_action_expert.model import ExpertConfig, PrefixBatch
from arvla_action_expert.policy import ExpertPolicy


def paper_config(window: int) -> ExpertConfig:
    return ExpertConfig(state_dim=7, action_dim=7, prefix_dim=384, max_prefix_tokens=64,
                        n_embd=512, n_layer=4, n_head=8, ffn=3200, window=window, n_bins=500)


def percentiles(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def bench_cached(policy: ExpertPolicy, iters: int, window: int, tokens: np.ndarray,
                 rng: np.random.Generator) -> tuple[list[float], list[np.ndarray]]:
    policy.reset()
    policy.refresh_prefix(tokens, 0)
    states = rng.standard_normal((window + iters, policy.state_dim))
    for t in range(window):  # fill the ring: measure the steady state
        policy.step(states[t], t)
    times, outs = [], []
    for t in range(window, window + iters):
        t0 = time.perf_counter()
        outs.append(policy.step(states[t], t))
        times.append(time.perf_counter() - t0)
    return times, outs


@torch.inference_mode()
def bench_recompute(policy: ExpertPolicy, iters: int, window: int, tokens: np.ndarray,
                    rng: np.random.Generator) -> list[float]:
    model = policy.model
    prefix = PrefixBatch(torch.as_tensor(tokens).view(1, 1, *tokens.shape),
                         torch.zeros(1, 1, dtype=torch.int64),
                         torch.zeros(1, window, dtype=torch.int64))
    states = torch.as_tensor(rng.standard_normal((1, window + iters, policy.state_dim)),
                             dtype=torch.float32)
    times = []
    for t in range(iters):
        t0 = time.perf_counter()
        out, _ = model(states[:, t:t + window], torch.arange(t, t + window).view(1, -1),
                       prefix=prefix)
        model.decode(out[:, -1])
        times.append(time.perf_counter() - t0)
    return times


@torch.inference_mode()
def raw_outputs(p: ExpertPolicy, window: int, tokens: np.ndarray) -> np.ndarray:
    """Head outputs (logits) of window + 20 steps of random states through p's step backend."""
    rng = np.random.default_rng(1)
    p.reset()
    p.refresh_prefix(tokens, 0)
    outs = []
    for t in range(window + 20):
        xn = p.state_norm.normalize(rng.standard_normal(p.state_dim))
        p.cache.begin_step(t, commit=True)
        if p._onnx is not None:
            outs.append(p._onnx(xn, t))
        else:
            outs.append(p.model.step(torch.as_tensor(xn).view(1, 1, -1), torch.tensor([[t]]),
                                     p.cache).reshape(-1).numpy())
        p.cache.end_step()
    return np.stack(outs)


def agreement(ref: np.ndarray, other: np.ndarray, n_bins: int) -> str:
    diff = np.abs(ref - other).max()
    same = (ref.reshape(len(ref), -1, n_bins).argmax(-1)
            == other.reshape(len(other), -1, n_bins).argmax(-1)).mean()
    return (f"max |logit diff| {diff:.2e} (logits up to {np.abs(ref).max():.2f}), argmax bins "
            f"identical {100 * same:.1f}% (random weights: near-flat logits, the worst case)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((49, 384)).astype(np.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch 1, "
          f"{args.iters} steps per row; times in ms")
    print(f"{'W':>4} {'variant':<16} {'p50':>8} {'p99':>8} {'recompute/this (p50)':>22}")
    for w in args.windows:
        fp32 = ExpertPolicy.build_untrained(paper_config(w), seed=0)
        rec = percentiles(bench_recompute(fp32, max(args.iters // 4, 20), w, tokens, rng))
        print(f"{w:>4} {'recompute fp32':<16} {rec[0]:8.2f} {rec[1]:8.2f} {1.0:>22.1f}")
        c32 = percentiles(bench_cached(fp32, args.iters, w, tokens, rng)[0])
        print(f"{w:>4} {'cached fp32':<16} {c32[0]:8.2f} {c32[1]:8.2f} {rec[0] / c32[0]:>22.1f}")
        ref = raw_outputs(fp32, w, tokens)
        variants = {"cached int8": dict(quantize=True), "onnx fp32": dict(onnx=False),
                    "onnx int8": dict(onnx=True)}
        for name, how in variants.items():
            p = ExpertPolicy.build_untrained(paper_config(w), seed=0)
            if "quantize" in how:
                p.quantize()
            else:
                p.use_onnx(int8=how["onnx"])
            r = percentiles(bench_cached(p, args.iters, w, tokens, rng)[0])
            print(f"{w:>4} {name:<16} {r[0]:8.2f} {r[1]:8.2f} {rec[0] / r[0]:>22.1f}")
            print(f"     {name} vs torch fp32: {agreement(ref, raw_outputs(p, w, tokens), 500)}")

if __name__ == "__main__":
    main()

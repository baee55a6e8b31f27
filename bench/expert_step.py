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


BLOCK = 40  # steps per variant per round
WARM = 3    # unrecorded steps at the start of each block (cache warm-up)


def paper_config(window: int) -> ExpertConfig:
    return ExpertConfig(state_dim=7, action_dim=7, prefix_dim=384, max_prefix_tokens=64,
                        n_embd=512, n_layer=4, n_head=8, ffn=3200, window=window, n_bins=500)


def percentiles(times: list[float]) -> tuple[float, float, float]:
    a = np.asarray(times) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.min())


class CachedRunner:
    """One policy stepping through random states; ``tick`` times one committed step."""

    def __init__(self, policy: ExpertPolicy, window: int, tokens: np.ndarray, seed: int):
        self.p, self.t = policy, 0
        self.states = np.random.default_rng(seed).standard_normal((4096, policy.state_dim))
        policy.reset()
        policy.refresh_prefix(tokens, 0)
        for _ in range(window):  # fill the ring: measure the steady state
            self.tick()

    def tick(self) -> float:
        s = self.states[self.t % len(self.states)]
        t0 = time.perf_counter()
        self.p.step(s, self.t)
        dt = time.perf_counter() - t0
        self.t += 1
        return dt


class RecomputeRunner:
    """``ARExpert.forward`` over the last W steps + the prefix, last token decoded."""

    def __init__(self, policy: ExpertPolicy, window: int, tokens: np.ndarray, seed: int):
        self.model, self.w, self.t = policy.model, window, 0
        self.prefix = PrefixBatch(torch.as_tensor(tokens).view(1, 1, *tokens.shape),
                                  torch.zeros(1, 1, dtype=torch.int64),
                                  torch.zeros(1, window, dtype=torch.int64))
        self.states = torch.as_tensor(np.random.default_rng(seed).standard_normal(
            (1, 4096 + window, policy.state_dim)), dtype=torch.float32)

    @torch.inference_mode()
    def tick(self) -> float:
        t, w = self.t % 4096, self.w
        t0 = time.perf_counter()
        out, _ = self.model(self.states[:, t:t + w], torch.arange(t, t + w).view(1, -1),
                            prefix=self.prefix)
        self.model.decode(out[:, -1])
        dt = time.perf_counter() - t0
        self.t += 1
        return dt


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
    ap.add_argument("--iters", type=int, default=400, help="steps per variant and window")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    tokens = np.random.default_rng(0).standard_normal((49, 384)).astype(np.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch 1, "
          f"~{args.iters} steps per variant and W; times in ms")
    print(f"rows interleaved in blocks of {BLOCK} steps (round robin), so load from other "
          "processes hits all rows alike; ratios use p50")
    print(f"{'W':>4} {'variant':<16} {'p50':>8} {'p99':>8} {'min':>8} {'recompute/this':>16}")
    for w in args.windows:
        policies = {"recompute fp32": ExpertPolicy.build_untrained(paper_config(w), seed=0)}
        policies["cached fp32"] = policies["recompute fp32"]
        for name in ("cached int8", "onnx fp32", "onnx int8"):
            p = policies[name] = ExpertPolicy.build_untrained(paper_config(w), seed=0)
            if name == "cached int8":
                p.quantize()
            else:
                p.use_onnx(int8=name == "onnx int8")
        runners = {name: (RecomputeRunner if name.startswith("recompute") else CachedRunner)(
            p, w, tokens, seed=2) for name, p in policies.items()}
        times: dict[str, list[float]] = {name: [] for name in runners}
        # blocks of BLOCK steps per variant, round robin: slow load drift hits all rows alike,
        # while each block runs with its own weights cache-warm (as on a robot, where the
        # expert runs alone); the first WARM steps of a block are not recorded
        for _ in range(max(args.iters // BLOCK, 1)):
            for name, r in runners.items():
                n = BLOCK // 8 if name.startswith("recompute") else BLOCK  # ~10-50x slower
                ts = [r.tick() for _ in range(n + WARM)]
                times[name] += ts[WARM:]
        rec = percentiles(times["recompute fp32"])[0]
        for name, ts in times.items():
            p50, p99, mn = percentiles(ts)
            print(f"{w:>4} {name:<16} {p50:8.2f} {p99:8.2f} {mn:8.2f} {rec / p50:>16.1f}")
        ref = raw_outputs(policies["cached fp32"], w, tokens)
        for name in ("cached int8", "onnx fp32", "onnx int8"):
            print(f"     {name} vs torch fp32: "
                  f"{agreement(ref, raw_outputs(policies[name], w, tokens), 500)}")

if __name__ == "__main__":
    main()

"""GPU benchmark (issue #17): expert step backends, prefix refresh, recompute, training, perception.

    python bench/gpu.py                  # paper size on the default device (CUDA when present)
    python bench/gpu.py --quick          # tiny sizes, seconds: a smoke run (also on a CPU host)
    python bench/gpu.py --device cpu --windows 100 --lookaheads 1

One run prints, side by side (times in ms, p50 / p99 over --iters ticks per cell):
1. expert step per backend at W in --windows and lookahead L in --lookaheads (a tick = the
   committed row + L-1 speculative rows, numpy in and out, as the node calls it):
   - eager: ``ExpertPolicy.step`` on the device (the cache path, ~100 kernel launches a row);
   - graph: ``inference: cuda_graph`` (``use_cuda_graph``: two captured CUDA graphs, fp32);
   - graph bf16: ``inference: cuda_graph_bf16``;
   - cpu eager: the cache path on this host's CPU, 1 thread (the node's default), for the ratio.
   Cells are interleaved in blocks (round robin), so drift in load hits all alike. Under the
   table each backend's agreement with eager over the same inputs: max |action difference| and
   the share of identical rows (random weights, 500 near-flat bins: a tiny logit difference
   moves an argmax; bf16 differs by design, fp32 graph should be identical);
2. prefix refresh (encode 49 tokens + install in the cache) and whole-window recompute (the
   training forward over W steps + the prefix, what a policy without the cache pays per tick);
3. training samples/s: the ``arvla train`` loop (stage 2 stream batches built on the host in
   the batch thread, autocast, AdamW) at paper size (batch 64, 64 steps, 49 tokens per frame, a
   frame every 32 steps) in fp32 and bf16 on the device, and fp32 on this host's CPU;
4. perception frames/s of the arvla_perception backbone on the device (single frames as the
   node runs it, and batches), then the expert graph step while perception runs on the same
   device in a thread.
Rows that need CUDA print "skipped (no CUDA)" on a CPU host. Random weights: speed does not
depend on their values. Nothing is asserted; see test/core/test_static_step.py for equality.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import threading
import time
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from arvla_action_expert.data import (InMemoryEpisodes, SampleBuilder,  # noqa: E402
                                      SampleSpec, synthetic_episodes)
from arvla_action_expert.model import ARExpert, ExpertConfig, PrefixBatch  # noqa: E402
from arvla_action_expert.normalize import Normalizer  # noqa: E402
from arvla_action_expert.policy import ExpertPolicy  # noqa: E402
from arvla_action_expert.train import (OptimConfig, autocast, batch_loss,  # noqa: E402
                                       device_batches, make_optimizer, optimizer_step,
                                       resolve_device, step_mask)

BLOCK = 20   # ticks per backend per round (round robin)
SKIP = "skipped (no CUDA)"


def expert_config(window: int, quick: bool) -> ExpertConfig:
    """Paper size (width 512, 4+4 layers, FFN 3200, 500 bins, 384-d tokens), or tiny."""
    if quick:
        return ExpertConfig(state_dim=7, action_dim=7, prefix_dim=32, max_prefix_tokens=64,
                            n_embd=64, n_layer=2, n_head=4, ffn=128, window=window, n_bins=32)
    return ExpertConfig(state_dim=7, action_dim=7, prefix_dim=384, max_prefix_tokens=64,
                        n_embd=512, n_layer=4, n_head=8, ffn=3200, window=window, n_bins=500)


def policy_on(config: ExpertConfig, device: torch.device) -> ExpertPolicy:
    torch.manual_seed(0)  # the same weights for every backend
    return ExpertPolicy(ARExpert(config), state_norm=Normalizer.identity(config.state_dim),
                        target_norm=Normalizer.identity(config.action_dim), control_rate_hz=50.0,
                        device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pct(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def cell(times: list[float] | None, width: int = 19) -> str:
    """'p50 p99' in ms, or SKIP when there are no times (a CUDA row on a CPU host)."""
    if not times:
        return SKIP.rjust(width)
    p50, p99 = pct(times)
    return f"{p50:8.3f} {p99:8.3f}".rjust(width)


# --------------------------------------------------------------------------------------------
# 1. expert step


class StepRunner:
    """One policy stepping through fixed random states; ``tick`` times one call of ``step``."""

    def __init__(self, policy: ExpertPolicy, tokens: np.ndarray, lookahead: int,
                 states: np.ndarray):
        self.p, self.lookahead, self.states, self.t = policy, lookahead, states, 0
        self.outs: dict[int, np.ndarray] = {}
        policy.reset()
        policy.refresh_prefix(tokens, 0)
        for _ in range(policy.cache_capacity):  # a full ring: the steady state
            self.tick(record=False)

    def tick(self, record: bool = True) -> float:
        s = self.states[self.t % len(self.states)]
        t0 = time.perf_counter()
        out = self.p.step(s, self.t, self.lookahead)
        dt = time.perf_counter() - t0
        if record:
            self.outs[self.t] = out
        self.t += 1
        return dt


def bench_steps(args: argparse.Namespace, dev: torch.device) -> None:
    cuda = dev.type == "cuda"
    names = ["eager", "graph", "graph bf16"] + (["cpu eager"] if cuda else [])
    print(f"\n1. expert step: p50 p99 [ms] per tick, {args.iters} ticks per cell "
          "(cpu eager: 1 thread)")
    print(f"{'W':>4} {'L':>3}" + "".join(f"{n:>19}" for n in names))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the expert node's torch_threads default
    for w in args.windows:
        cfg = expert_config(w, args.quick)
        tokens = np.random.default_rng(0).standard_normal((49, cfg.prefix_dim)).astype(np.float32)
        states = np.random.default_rng(1).standard_normal((4096, cfg.state_dim))
        for look in args.lookaheads:
            policies: dict[str, ExpertPolicy] = {"eager": policy_on(cfg, dev)}
            if cuda:
                for name, bf16 in (("graph", False), ("graph bf16", True)):
                    policies[name] = policy_on(cfg, dev)
                    policies[name].use_cuda_graph(bf16=bf16)
                policies["cpu eager"] = policy_on(cfg, torch.device("cpu"))
            runners = {n: StepRunner(p, tokens, look, states) for n, p in policies.items()}
            times: dict[str, list[float]] = {n: [] for n in runners}
            for _ in range(max(args.iters // BLOCK, 1)):
                for n, r in runners.items():
                    times[n] += [r.tick() for _ in range(BLOCK)]
            print(f"{w:>4} {look:>3}" + "".join(cell(times.get(n)) for n in names))
            ref = runners["eager"].outs
            for n, r in runners.items():
                if n == "eager":
                    continue
                diffs = np.stack([np.abs(r.outs[t] - ref[t]).max(axis=-1) for t in ref])
                print(f"{'':9}{n} vs eager: max |action diff| {diffs.max():.2e}, identical rows "
                      f"{100 * np.mean(diffs <= 1e-6):.1f}% of {diffs.size}")
            del policies, runners
            if cuda:
                torch.cuda.empty_cache()
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# 2. prefix refresh and whole-window recompute


def timed(fn: Callable[[], object], n: int, dev: torch.device, warm: int = 3) -> list[float]:
    out = []
    for i in range(n + warm):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        if i >= warm:
            out.append(time.perf_counter() - t0)
    return out


@torch.inference_mode()
def bench_refresh_recompute(args: argparse.Namespace, dev: torch.device) -> None:
    print(f"\n2. prefix refresh (49 tokens) and whole-window recompute: p50 p99 [ms], "
          f"{args.iters} each")
    devices = [dev] + ([torch.device("cpu")] if dev.type == "cuda" else [])
    print(f"{'W':>4} {'what':<22}" + "".join(f"{str(d):>19}" for d in devices))
    for w in args.windows:
        cfg = expert_config(w, args.quick)
        tokens = np.random.default_rng(0).standard_normal((49, cfg.prefix_dim)).astype(np.float32)
        refresh, recompute = [], []
        for d in devices:
            p = policy_on(cfg, d)
            refresh.append(timed(lambda: p.refresh_prefix(tokens, 0), args.iters, d))
            prefix = PrefixBatch(torch.as_tensor(tokens, device=d)[None, None],
                                 torch.zeros(1, 1, dtype=torch.int64, device=d),
                                 torch.zeros(1, w, dtype=torch.int64, device=d))
            x = torch.randn(1, w, cfg.state_dim, device=d)
            pos = torch.arange(w, device=d)[None]

            def full() -> None:
                out, _ = p.model(x, pos, prefix=prefix)
                p.model.decode(out[:, -1]).cpu()

            recompute.append(timed(full, max(args.iters // 4, 5), d))
        print(f"{w:>4} {'prefix refresh':<22}" + "".join(cell(t) for t in refresh))
        print(f"{w:>4} {'recompute W steps':<22}" + "".join(cell(t) for t in recompute))


# --------------------------------------------------------------------------------------------
# 3. training samples/s


def train_rate(cfg: ExpertConfig, dev: torch.device, *, bf16: bool, steps: int, warm: int,
               batch: int, length: int) -> float:
    """Samples/s of the training loop (train.train's body: stage-2 stream batches built on the
    host, through device_batches, autocast, loss, AdamW) after ``warm`` untimed steps."""
    torch.manual_seed(0)
    model = ARExpert(cfg).to(dev).train()
    o = OptimConfig(warmup_steps=0, max_steps=10 ** 6)
    opt = make_optimizer(model, o, fused=True if dev.type == "cuda" else None)
    eps = synthetic_episodes(32, steps=4 * length, state_dim=cfg.state_dim,
                             prefix_dim=cfg.prefix_dim, n_tokens=49, frame_every=length // 2,
                             seed=0)
    builder = SampleBuilder(InMemoryEpisodes(eps), delta_actions=cfg.delta_actions)
    spec = SampleSpec(length // 2, length - length // 2, 4, cfg.aux_chunk, prefix_mode="stream")
    g = torch.Generator().manual_seed(0)

    def host():
        for _ in range(warm + steps):
            b = builder.stage2_batch(batch, spec, g)
            yield b, step_mask(b, 0.1, g)

    t0 = 0.0
    batches = device_batches(host(), dev)
    try:
        for i, (b, mask) in enumerate(batches):
            if i == warm:
                sync(dev)
                t0 = time.perf_counter()
            with autocast(dev, bf16):
                loss = batch_loss(model, b, mask)
            optimizer_step(model, opt, loss, i, o)
            loss.item()
    finally:
        batches.close()
    sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def bench_training(args: argparse.Namespace, dev: torch.device) -> None:
    cfg = expert_config(100, args.quick)
    batch, length = (8, 16) if args.quick else (64, 64)
    print(f"\n3. training samples/s (batch {batch}, {length} steps, 49 tokens per frame; "
          f"{args.train_steps} timed steps after 3; CPU: {args.cpu_train_steps} steps, "
          f"{torch.get_num_threads()} threads)")
    rows = [("fp32", dev, False, args.train_steps), ("bf16 autocast", dev, True, args.train_steps)]
    if dev.type == "cuda":
        rows.append(("fp32", torch.device("cpu"), False, args.cpu_train_steps))
    rates = {}
    for name, d, bf16, steps in rows:
        rate = train_rate(cfg, d, bf16=bf16, steps=steps, warm=3, batch=batch, length=length)
        rates[(name, d.type)] = rate
        print(f"  {name:<14} {str(d):<8} {rate:10.1f} samples/s")
    if dev.type == "cuda":
        cpu = rates[("fp32", "cpu")]
        print(f"  GPU fp32 / CPU fp32: {rates[('fp32', 'cuda')] / cpu:.1f}x, "
              f"GPU bf16 / CPU fp32: {rates[('bf16 autocast', 'cuda')] / cpu:.1f}x")
    else:
        print(f"  GPU rows: {SKIP}; the device is this CPU (CPU bf16 autocast is usually slower)")


# --------------------------------------------------------------------------------------------
# 4. perception (and the expert beside it)


def bench_perception(args: argparse.Namespace, dev: torch.device) -> None:
    from arvla_perception.backbone import BackboneError, load_backbone
    from arvla_perception.config import PerceptionConfig

    print(f"\n4. perception on {dev}: default backbone at {args.image_size} px, "
          f"{args.frames} frames")
    dtypes = ["float32"] + (["bfloat16"] if dev.type == "cuda" else [])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    n = min(32, args.frames)
    batch = [frames[i % len(frames)] for i in range(n)]
    backbone = None
    for dtype in dtypes:
        try:
            backbone = load_backbone(PerceptionConfig(device=str(dev), dtype=dtype,
                                                      image_size=args.image_size, num_threads=0))
        except BackboneError as err:
            print(f"  {dtype}: backbone not available ({err})")
            return
        seen = [0]

        def encode() -> None:  # one camera-sized frame, as the node runs it
            seen[0] += 1
            backbone.encode(frames[seen[0] % len(frames)], "pick up the cube")

        single = timed(encode, args.frames, dev)
        batched = timed(lambda: backbone.encode_batch(batch, "pick up the cube"),
                        max(args.frames // n, 2), dev, warm=1)
        p50, p99 = pct(single)
        print(f"  {dtype:<9} single frame p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  -> "
              f"{1e3 / p50:7.1f} frames/s; batches of {n}: {n / np.median(batched):7.1f} frames/s")
    if dev.type != "cuda" or backbone is None:
        print(f"  expert graph step beside perception: {SKIP}")
        return
    cfg = expert_config(100, args.quick)
    p = policy_on(cfg, dev)
    p.use_cuda_graph()
    tokens = rng.standard_normal((49, cfg.prefix_dim)).astype(np.float32)
    runner = StepRunner(p, tokens, 5, rng.standard_normal((4096, cfg.state_dim)))
    stop, count = threading.Event(), [0]

    def perceive() -> None:
        while not stop.is_set():
            backbone.encode(frames[count[0] % len(frames)], "pick up the cube")
            count[0] += 1

    alone = [runner.tick() for _ in range(args.iters)]
    worker = threading.Thread(target=perceive, daemon=True)
    t0 = time.perf_counter()
    worker.start()
    beside = []
    for _ in range(args.iters):
        beside.append(runner.tick())
        time.sleep(0.02 - min(beside[-1], 0.02))  # a 50 Hz control loop
    stop.set()
    worker.join()
    fps = count[0] / (time.perf_counter() - t0)
    print(f"  expert graph W=100 L=5 tick: alone {cell(alone)}; at 50 Hz beside perception "
          f"{cell(beside)} (p50 p99 ms), perception meanwhile {fps:.1f} frames/s")


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few iterations")
    ap.add_argument("--windows", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--lookaheads", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--iters", type=int, default=400, help="ticks per step cell")
    ap.add_argument("--train-steps", type=int, default=30, help="timed training steps (device)")
    ap.add_argument("--cpu-train-steps", type=int, default=3, help="timed training steps (CPU)")
    ap.add_argument("--frames", type=int, default=200, help="perception frames")
    ap.add_argument("--image-size", type=int, default=224, help="perception input size (px)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["steps", "refresh", "train",
                                                              "perception"])
    args = ap.parse_args()
    if args.quick:
        args.iters, args.train_steps, args.cpu_train_steps = 40, 3, 2
        args.frames, args.image_size = 6, 128
    logging.basicConfig(level=logging.ERROR)
    if args.quick:
        torch.set_num_threads(1)
    dev = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none"
    size = "quick (tiny sizes)" if args.quick else "paper size"
    have = "available" if torch.cuda.is_available() else "not available: CUDA rows are skipped"
    print(f"torch {torch.__version__}, device {dev} ({gpu}), {size}; CUDA {have}")
    if "steps" not in args.skip:
        bench_steps(args, dev)
    if "refresh" not in args.skip:
        bench_refresh_recompute(args, dev)
    if "train" not in args.skip:
        bench_training(args, dev)
    if "perception" not in args.skip:
        bench_perception(args, dev)


if __name__ == "__main__":
    main()

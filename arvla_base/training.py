"""The training-loop pieces every arvla policy trains with (the AR expert, the chunked
baseline): optimiser and schedule (AdamW, linear warmup then cosine), devices and bfloat16
autocast, host-built batches moved to the device, DDP under torchrun, progress and loss trend,
and a train config read from YAML with command-line overrides. ROS-free; torch only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import queue
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import torch
from tqdm import tqdm

from arvla_base.config import ConfigError, from_dict, load_config, require, to_dict

__all__ = ["Distributed", "OptimConfig", "ValidationCurve", "autocast", "device_batches",
           "load_train_config", "loss_trend", "lr_at", "make_optimizer", "optimizer_step",
           "resolve_device", "show_progress", "to_device"]

log = logging.getLogger("arvla_action_expert.train")


ConfigT = TypeVar("ConfigT")


@dataclass
class OptimConfig:
    lr: float = 3e-4             # peak learning rate after warmup
    min_lr_ratio: float = 0.1    # cosine decays to lr * min_lr_ratio at max_steps
    weight_decay: float = 0.01   # AdamW, on matrices only (not norms/biases/positions)
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 100
    max_steps: int = 10_000
    batch_size: int = 32
    grad_clip: float = 1.0       # max global grad norm (0 = off)

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", self.lr, "must be > 0")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        require(0 <= self.beta1 < 1, "beta1", self.beta1, "must be in [0, 1)")
        require(0 <= self.beta2 < 1, "beta2", self.beta2, "must be in [0, 1)")
        require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        require(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        require(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0")


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a ``torchrun`` job (world_size 1 = plain single process).

    Data parallelism that reproduces the single-process run: every rank draws the SAME global
    batch from the same seeded generator and trains on its own contiguous slice of it; DDP
    averages the gradients, which for equal slices is the gradient of the whole batch. So
    ``torchrun --nproc_per_node=N arvla-train ...`` follows the single-process loss curve (up to
    float summation order) while each rank does 1/N of the work. gloo on CPU, NCCL on CUDA:
    the backend follows the device the run trains on (``resolve_device``), not what the host
    has, and on CUDA each rank is bound to GPU LOCAL_RANK.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1    # ranks on this host (torchrun's LOCAL_WORLD_SIZE)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        import os

        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

    def init(self, device: torch.device = torch.device("cpu")) -> None:
        """Join the process group: NCCL when this rank trains on a GPU (``device``, bound as the
        current CUDA device first), gloo on the CPU."""
        if not self.enabled or torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
        log.info("distributed training: rank %d of %d (%s on %s)", self.rank, self.world_size,
                 backend, device)

    def shard(self, batch: dict[str, torch.Tensor], mask: torch.Tensor
              ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """This rank's contiguous slice of the global batch (and of its attention mask)."""
        if not self.enabled:
            return batch, mask
        B = mask.shape[0]
        per = B // self.world_size
        sl = slice(self.rank * per, (self.rank + 1) * per)
        return {k: v[sl] for k, v in batch.items()}, mask[sl]

    def mean(self, value: float, device: torch.device = torch.device("cpu")) -> float:
        """Average a scalar over ranks (for the loss that is logged and returned); ``device``:
        where the backend reduces (NCCL: the rank's GPU)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world_size


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def resolve_device(spec: str, dist: Distributed = Distributed()) -> torch.device:
    """``--device``: "auto" (CUDA when this host has it, else the CPU), "cpu", "cuda" or
    "cuda:N". Under torchrun ("auto" / "cuda") every rank takes GPU LOCAL_RANK; "auto" stays on
    the CPU (all ranks alike) when the host has fewer GPUs than ranks. ConfigError for an
    unknown spec, a GPU that is not there, or "cuda:N" with several ranks."""
    if not _DEVICE.fullmatch(spec):
        raise ConfigError(f"device: must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have == 0 or (dist.enabled and have < dist.local_world_size):
            if have:
                log.warning("device auto: %d GPU(s) for %d ranks on this host: training on the "
                            "CPU (gloo)", have, dist.local_world_size)
            return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {spec!r}, but torch {torch.__version__} sees no CUDA device "
                          "(use --device cpu or auto)")
    count = torch.cuda.device_count()
    if ":" in spec:
        if dist.enabled:
            raise ConfigError(f"device: {spec!r} pins one GPU, but torchrun started "
                              f"{dist.world_size} ranks: use 'cuda' (rank -> GPU LOCAL_RANK) "
                              "and CUDA_VISIBLE_DEVICES to choose the GPUs")
        index = int(spec.split(":")[1])
    else:
        index = dist.local_rank if dist.enabled else torch.cuda.current_device()
    if index >= count:
        raise ConfigError(f"device: GPU {index} requested (LOCAL_RANK {dist.local_rank}), this "
                          f"host has {count}")
    return torch.device("cuda", index)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bfloat16 autocast for forward and loss (``--bf16``); a no-op context when off."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def to_device(batch: dict[str, torch.Tensor], device: torch.device
              ) -> dict[str, torch.Tensor]:
    """A batch on ``device``: one asynchronous copy per tensor (the same tensors on the CPU)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


BatchT = TypeVar("BatchT")


def device_batches(host: Iterable[BatchT], device: torch.device, *,
                   prefetch: int | None = None) -> Iterator[BatchT]:
    """The items of ``host`` (tuples of batch dicts, tensors and plain values, built on the CPU
    in order) with their tensors on ``device``. On CUDA (or with ``prefetch`` > 0) a background
    thread builds the next ``prefetch`` (default 2) items, pinned, while the GPU trains on this
    one: the host's Python sampling and the device's work overlap, and the item sequence (the
    seeded generator's draws) is exactly the sequential one. An error in the thread is raised
    here; closing the generator stops the thread."""
    def move(item: Any, dev: torch.device) -> Any:
        return tuple(to_device(x, dev) if isinstance(x, dict) else
                     x.to(dev, non_blocking=True) if torch.is_tensor(x) else x for x in item)

    depth = prefetch if prefetch is not None else (2 if device.type == "cuda" else 0)
    if depth <= 0:
        for item in host:
            yield move(item, device)
        return
    pin = device.type == "cuda"

    def pinned(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: pinned(v) for k, v in x.items()}
        if isinstance(x, tuple):
            return tuple(pinned(v) for v in x)
        return x.pin_memory() if pin and torch.is_tensor(x) else x

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, item: Any) -> bool:
        """Queue ``item`` unless the consumer has gone (then False)."""
        while not stop.is_set():
            try:
                q.put((kind, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in host:
                if not offer("item", pinned(item)):
                    return
            offer("end", None)
        except BaseException as err:  # handed to the consumer, raised there
            offer("error", err)

    worker = threading.Thread(target=produce, name="arvla-batches", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield move(item, device)
    finally:
        stop.set()
        worker.join(timeout=5.0)


def lr_at(step: int, o: OptimConfig) -> float:
    """Linear warmup to ``lr``, then cosine to ``lr * min_lr_ratio`` at ``max_steps``."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    span = max(o.max_steps - o.warmup_steps, 1)
    progress = min((step - o.warmup_steps) / span, 1.0)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, o: OptimConfig, *, no_decay: Sequence[str] = (),
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: not on norms, biases, position embeddings
    (names containing "pos") or the parameters named in ``no_decay``. ``fused``: torch's
    single-kernel AdamW (on CUDA); None = torch's default."""
    def decays(name: str, p: torch.nn.Parameter) -> bool:
        return p.dim() >= 2 and "pos" not in name and name not in no_decay

    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n, p)], "weight_decay": o.weight_decay},
         {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}],
        lr=o.lr, betas=(o.beta1, o.beta2), fused=fused)


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor,
                   step: int, o: OptimConfig) -> None:
    """One update at ``lr_at(step)``: a non-finite loss stops training (naming the step) rather
    than poisoning the weights; the global grad norm is clipped to ``o.grad_clip`` (0 = off)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at step {step}")
    for group in opt.param_groups:
        group["lr"] = lr_at(step, o)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if o.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
    opt.step()


def show_progress(bar: tqdm, losses: list[float], step: int, every: int, o: OptimConfig) -> None:
    """Every ``every`` steps: the mean loss since the last update and the lr on the bar."""
    if (step + 1) % every == 0:
        recent = losses[-every:]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", lr=f"{lr_at(step, o):.2e}")


def loss_trend(losses: Sequence[float]) -> str:
    """``loss a -> b over n steps``: means of the first and the last tenth of a run."""
    n = len(losses)
    k = max(1, n // 10)
    return f"loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} over {n} steps"


@dataclass
class ValidationCurve:
    """The loss on held-out demonstrations (``data.val_path``) during a run: how a user sees
    over- or under-training instead of guessing a step budget. ``every``: steps between points
    (0 = only after the last step). Points are (optimiser step, mean loss over the same fixed
    held-out batches every time, in eval mode), the step counted after the update."""

    every: int = 0
    steps: list[int] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)

    def due(self, step: int, max_steps: int) -> bool:
        """Whether to validate after update ``step`` (0-based) of a run of ``max_steps``."""
        done = step + 1
        return done == max_steps or (self.every > 0 and done % self.every == 0)

    def add(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def best(self) -> tuple[int, float]:
        """(step, loss) of the lowest held-out loss."""
        i = min(range(len(self.losses)), key=self.losses.__getitem__)
        return self.steps[i], self.losses[i]

    def summary(self) -> str:
        if not self.losses:
            return "no held-out loss"
        step, loss = self.best()
        return (f"held-out loss {self.losses[-1]:.4f} at step {self.steps[-1]} (best {loss:.4f} "
                f"at step {step})")

    def write(self, directory: str | pathlib.Path, **extra: Any) -> pathlib.Path | None:
        """``val_curve.json`` beside the checkpoint in ``directory`` (None: nothing measured)."""
        if not self.losses:
            return None
        path = pathlib.Path(directory) / "val_curve.json"
        best_step, best_loss = self.best()
        path.write_text(json.dumps({"steps": self.steps, "losses": self.losses,
                                    "best_step": best_step, "best_loss": best_loss, **extra},
                                   indent=1) + "\n", encoding="utf-8")
        return path


def load_train_config(cls: type[ConfigT], path: str | pathlib.Path, *, data: str | None = None,
                      max_steps: int | None = None, batch_size: int | None = None,
                      num_threads: int | None = None, val_data: str | None = None,
                      val_every: int | None = None) -> ConfigT:
    """A train config (``TrainConfig``, the baseline's ``ChunkTrainConfig``) from YAML with the
    command-line overrides applied and validated like the file: ``data`` -> data.path,
    ``max_steps`` / ``batch_size`` -> optim.*, ``num_threads``, ``val_data`` -> data.val_path,
    ``val_every``."""
    cfg = load_config(cls, path)
    if data:
        cfg.data = dataclasses.replace(cfg.data, path=data)
    if val_data:
        cfg.data = dataclasses.replace(cfg.data, val_path=val_data)
    if val_every is not None:
        cfg = dataclasses.replace(cfg, val_every=val_every)
    optim = {k: v for k, v in (("max_steps", max_steps), ("batch_size", batch_size))
             if v is not None}
    if optim:
        cfg.optim = from_dict(OptimConfig, {**to_dict(cfg.optim), **optim}, prefix="optim.")
    if num_threads is not None:
        cfg = dataclasses.replace(cfg, num_threads=num_threads)
    return cfg

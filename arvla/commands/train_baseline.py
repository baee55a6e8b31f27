"""``arvla eval train-baseline``: train the chunked baseline."""

from __future__ import annotations

import argparse
import logging
import sys

from arvla_action_expert.checkpoint import CheckpointError
from arvla_base.config import ConfigError
from arvla_base.episode import EpisodeError
from arvla_base.training import load_train_config, loss_trend
from arvla_baselines.chunk import ChunkTrainConfig, train_chunk


def cli_main(argv: list[str]) -> int:
    """``arvla eval train-baseline``: train the chunked baseline."""
    ap = argparse.ArgumentParser(prog="arvla eval train-baseline",
                                 description="train the ACT-style chunked baseline")
    ap.add_argument("--config", required=True, help="chunk train config YAML (config/chunk_*.yaml)")
    ap.add_argument("--data", help="directory of .npz episodes (overrides data.path)")
    ap.add_argument("--out", required=True, help="checkpoint directory")
    ap.add_argument("--max-steps", type=int, help="override optim.max_steps")
    ap.add_argument("--device", default="auto",
                    help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for forward and loss")
    ap.add_argument("--val-data", metavar="DIR",
                    help="held-out .npz episodes (other seeds): their loss during training, in "
                         "val_curve.json beside the checkpoint (overrides data.val_path)")
    ap.add_argument("--val-every", type=int, metavar="N",
                    help="held-out loss every N steps (overrides val_every; 0 = at the end)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(ChunkTrainConfig, args.config, data=args.data,
                                max_steps=args.max_steps, val_data=args.val_data,
                                val_every=args.val_every)
        result = train_chunk(cfg, out=args.out, progress=not args.no_progress,
                             device=args.device, bf16=args.bf16)
    except (ConfigError, CheckpointError, EpisodeError) as err:
        print(f"arvla eval train-baseline: {err}", file=sys.stderr)
        return 2
    print(f"chunk baseline: {loss_trend(result.losses)} in {result.seconds:.1f} s, "
          f"L1 {result.val_l1:.4f} on a fresh training batch"
          f"{'; ' + result.val.summary() if result.val.losses else ''}; checkpoint {result.path}")
    return 0

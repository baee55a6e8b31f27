"""``arvla train``: train the action expert, stage 1 or 2 (also ``torchrun ... -m arvla.commands.train``)."""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import arvla_action_expert.train as train_module
import json

import torch

from arvla_action_expert.checkpoint import CheckpointError
from arvla_action_expert.train import TrainConfig, train
from arvla_base.config import ConfigError
from arvla_base.episode import EpisodeError
from arvla_base.training import Distributed, load_train_config, loss_trend

log = logging.getLogger("arvla_action_expert.train")


def cli_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="arvla train", description=train_module.__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="train config YAML (model/optim/data)")
    ap.add_argument("--stage", type=int, choices=(1, 2), required=True)
    ap.add_argument("--data", help="directory of .npz episodes (overrides data.path)")
    ap.add_argument("--out", default=None, help="checkpoint directory (default runs/stage<N>)")
    ap.add_argument("--init", help="checkpoint to start from (stage 2: the stage-1 result)")
    ap.add_argument("--perception-params", metavar="FILE",
                    help="perception node parameters file the data's prefixes were made with: its "
                         "token settings (hidden_layer, token_grid, ...) go into the checkpoint, and "
                         "bring-up starts perception with them (default: those of --init)")
    ap.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    ap.add_argument("--max-steps", type=int, help="override optim.max_steps")
    ap.add_argument("--batch-size", type=int, help="override optim.batch_size (global batch)")
    ap.add_argument("--num-threads", type=int, help="override num_threads (per process)")
    ap.add_argument("--device", default="auto",
                    help="auto (CUDA when present), cpu, cuda or cuda:N; under torchrun 'auto' / "
                         "'cuda' give each rank GPU LOCAL_RANK (default auto)")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast for forward and loss (weights and optimiser stay fp32)")
    ap.add_argument("--val-data", metavar="DIR",
                    help="held-out .npz episodes (other seeds): their loss during training, in "
                         "val_curve.json beside the checkpoint (overrides data.val_path)")
    ap.add_argument("--val-every", type=int, metavar="N",
                    help="held-out loss every N steps (overrides val_every; 0 = at the end)")
    ap.add_argument("--losses-json", help="also write every step's loss to this JSON file")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(TrainConfig, args.config, data=args.data,
                                max_steps=args.max_steps, batch_size=args.batch_size,
                                num_threads=args.num_threads, val_data=args.val_data,
                                val_every=args.val_every)
        if args.stage == 2 and args.init is None and not args.resume:
            log.warning("stage 2 without --init: the prefix alignment starts from random weights")
        out = args.out or f"runs/stage{args.stage}"
        perception = None
        if args.perception_params:
            # the command line sits above the parts: it may read the perception node's parameters
            from arvla_base.params import read_node_params
            from arvla_perception.config import token_settings_of

            perception = token_settings_of(read_node_params(args.perception_params))
        result = train(cfg, stage=args.stage, out=out, init=args.init, resume=args.resume,
                       progress=not args.no_progress, perception=perception,
                       device=args.device, bf16=args.bf16)
    except (ConfigError, CheckpointError, EpisodeError) as err:
        print(f"arvla train: {err}", file=sys.stderr)
        return 2
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank tears its sockets down while a peer still talks
        torch.distributed.destroy_process_group()
    if not Distributed.from_env().is_main:
        return 0
    if args.losses_json:
        pathlib.Path(args.losses_json).write_text(json.dumps(result.losses), encoding="utf-8")
    if result.losses:
        val = f"; {result.val.summary()}" if result.val.losses else ""
        print(f"stage {args.stage}: {loss_trend(result.losses)}{val}; checkpoint {result.path}")
    else:
        print(f"stage {args.stage}: already at step {result.step}; checkpoint {result.path}")
    return 0


if __name__ == "__main__":  # torchrun --nproc_per_node=N -m arvla.commands.train ...
    sys.exit(cli_main(sys.argv[1:]))

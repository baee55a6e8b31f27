"""``arvla replay``: open-loop replay of a bag through a checkpoint."""

from __future__ import annotations

import argparse
import sys

import arvla_eval.replay as replay_module
from arvla_data.bag import BagError
from arvla_eval.replay import load_any_policy, replay_bag


def cli_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="arvla replay", description=replay_module.__doc__.split("\n\n")[0])
    ap.add_argument("bag", help="rosbag2 bag (directory or .mcap/.db3)")
    ap.add_argument("--checkpoint", required=True,
                    help="AR expert or chunked baseline checkpoint")
    ap.add_argument("--mode", choices=("chunk", "temporal_ensemble"),
                    help="execution mode of a chunked baseline")
    ap.add_argument("--max-staleness", type=int, default=10)
    ap.add_argument("--allow-action-only", action="store_true")
    ap.add_argument("--command-topic", default="/arm_controller/joint_trajectory",
                    help="recorded actions ('' = next joint state)")
    args = ap.parse_args(argv)
    from arvla_action_expert.checkpoint import CheckpointError

    try:
        policy = load_any_policy(args.checkpoint, mode=args.mode)
        result = replay_bag(args.bag, policy, max_staleness=args.max_staleness,
                            allow_action_only=args.allow_action_only,
                            command_topic=args.command_topic)
    except (BagError, CheckpointError, ValueError) as err:
        print(f"arvla replay: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0

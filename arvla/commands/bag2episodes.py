"""``arvla bag2episodes``: rosbag2 bags to training episodes."""

from __future__ import annotations

import argparse
import sys

from typing import Any

from arvla_base.config import ConfigError, from_dict
from arvla_base.episode import EpisodeError
from arvla_data.bag import BagError
from arvla_data.episodes import BagEpisodeConfig, bags_to_episodes


def cli_main(argv: list[str]) -> int:
    """``arvla bag2episodes BAG... --output DIR [--config YAML] [--control-rate-hz HZ] ...``"""
    from arvla_base.config import load_yaml

    parser = argparse.ArgumentParser(prog="arvla bag2episodes",
                                     description="Convert rosbag2 recordings to training episodes "
                                                 "(.npz, docs/CONTRACTS.md 'Episodes').")
    parser.add_argument("bags", nargs="+", help="bag directories (or .mcap/.db3 files)")
    parser.add_argument("--output", "-o", required=True, help="output directory")
    parser.add_argument("--config", help="YAML file; its 'bag2episodes' section (or the whole "
                                         "file) holds BagEpisodeConfig keys")
    parser.add_argument("--control-rate-hz", type=float)
    parser.add_argument("--joint-names", nargs="+")
    parser.add_argument("--command-topic", help="'' = actions from the next state")
    parser.add_argument("--keep-images", action="store_true")
    parser.add_argument("--task")
    args = parser.parse_args(argv)
    try:
        data: dict[str, Any] = {}
        if args.config:
            data = load_yaml(args.config)
            data = data.get("bag2episodes", data)
        for key in ("control_rate_hz", "joint_names", "command_topic", "task"):
            if getattr(args, key) is not None:
                data[key] = getattr(args, key)
        if args.keep_images:
            data["keep_images"] = True
        cfg = from_dict(BagEpisodeConfig, data)
        written = bags_to_episodes(args.bags, args.output, cfg)
    except (ConfigError, EpisodeError, BagError) as err:
        print(f"arvla bag2episodes: {err}", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0

"""``arvla record``: record arvla topics to a rosbag2 bag."""

from __future__ import annotations

import argparse
import sys

import arvla_data.record as record_module
import time

from arvla_base.config import ConfigError
from arvla_data.bag import STORAGE_FORMATS, BagError
from arvla_data.record import DEFAULT_TOPICS, RecordConfig, record


def cli_main(argv: list[str]) -> int:
    """``arvla record [-o BAG] [--topics T ...] [--all-arvla] [--duration S] [--storage mcap]``"""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from arvla_data.bag import RecordingInterrupted

    parser = argparse.ArgumentParser(prog="arvla record", description=record_module.__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", default=time.strftime("arvla_%Y%m%d_%H%M%S"),
                        help="bag directory to create (default arvla_<date>_<time>)")
    parser.add_argument("--topics", nargs="+", default=[],
                        help=f"topics to record (default: {' '.join(DEFAULT_TOPICS)})")
    parser.add_argument("--all-arvla", action="store_true", help="also every /arvla/* topic")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds to record (default: until Ctrl-C / SIGTERM)")
    parser.add_argument("--storage", default="mcap", choices=STORAGE_FORMATS)
    parser.add_argument("--use-sim-time", action="store_true",
                        help="timestamp messages on /clock time")
    args = parser.parse_args(argv)
    try:
        config = RecordConfig(output=args.output, topics=args.topics, all_arvla=args.all_arvla,
                              duration_s=args.duration, storage=args.storage)
    except ConfigError as err:
        print(f"arvla record: {err}", file=sys.stderr)
        return 2
    # Our own SIGINT/SIGTERM handling closes the bag; rclpy's would tear the context down first.
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    result = None
    try:
        print(f"arvla record: writing {config.output} ({config.storage})", flush=True)
        result = record(config, context, use_sim_time=args.use_sim_time)
    except RecordingInterrupted as err:  # arrived while setting up or closing: bag is closed
        print(f"arvla record: {err}; bag {config.output} closed", flush=True)
        return 0
    except BagError as err:
        print(f"arvla record: {err}", file=sys.stderr)
        return 1
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
    summary = ", ".join(f"{t}: {n}" for t, n in sorted(result.counts.items())) or "no topics seen"
    if result.lost:
        summary += "; LOST in transport: " + ", ".join(
            f"{t}: {n}" for t, n in sorted(result.lost.items()))
    print(f"arvla record: stopped ({result.stopped_by}); bag {config.output} closed; {summary}",
          flush=True)
    return 0

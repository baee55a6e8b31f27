"""``arvla export-lerobot``: training episodes as a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse
import sys

from arvla_base.episode import EpisodeError
from arvla_data.lerobot_export import episode_files, export_lerobot


def cli_main(argv: list[str]) -> int:
    """``arvla export-lerobot EPISODES... --output DIR [--camera-key K] [--robot-type T] ...``"""
    parser = argparse.ArgumentParser(
        prog="arvla export-lerobot",
        description="Write arvla episodes (.npz, e.g. from 'arvla bag2episodes --keep-images' or "
                    "the demo's collect/*/episodes) as a LeRobot v3.0 dataset: parquet data, "
                    "metadata and, for episodes with images, an MP4 video of the camera.")
    parser.add_argument("episodes", nargs="+", help="episode .npz files or directories of them")
    parser.add_argument("--output", "-o", required=True, help="dataset directory (new)")
    parser.add_argument("--camera-key", default="observation.images.camera",
                        help="feature name of the camera video")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--robot-type", default="", help="info.json robot_type, e.g. panda")
    parser.add_argument("--codec", default="", help="PyAV video encoder (default: libx264, else mpeg4)")
    parser.add_argument("--crf", type=int, default=18, help="video quality, lower = better (0-51)")
    parser.add_argument("--gop", type=int, default=2, help="keyframe every N frames")
    args = parser.parse_args(argv)
    try:
        summary = export_lerobot(episode_files(args.episodes), args.output,
                                 camera_key=args.camera_key, state_key=args.state_key,
                                 action_key=args.action_key, robot_type=args.robot_type,
                                 codec=args.codec, crf=args.crf, gop=args.gop)
    except EpisodeError as err:
        print(f"arvla export-lerobot: {err}", file=sys.stderr)
        return 1
    video = f", video {summary.camera_key}" if summary.camera_key else ", no video (no images)"
    print(f"{summary.root}: {summary.episodes} episodes, {summary.frames} frames, "
          f"{len(summary.tasks)} task(s){video}")
    return 0

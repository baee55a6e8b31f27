"""``arvla import-lerobot``: a LeRobot dataset to training episodes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from arvla_base.episode import EpisodeError
from arvla_data.lerobot import import_lerobot


def cli_main(argv: list[str]) -> int:
    """``arvla import-lerobot DATASET_DIR --output DIR [--image-key K [--prefixes]] ...``"""
    from arvla_base.config import ConfigError

    parser = argparse.ArgumentParser(
        prog="arvla import-lerobot",
        description="Convert a LeRobot-format dataset (v2.x or v3.0: meta/info.json + "
                    "data/chunk-*/*.parquet [+ videos/]) to arvla episodes, optionally with the "
                    "camera's prefixes computed by the perception backbone.")
    parser.add_argument("root", help="dataset directory (holds meta/ and data/)")
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("--image-key", help="camera feature (image or video) whose frames the "
                                            "episodes get, e.g. observation.images.top")
    parser.add_argument("--prefixes", action="store_true",
                        help="compute the frames' prefixes with the perception backbone "
                             "(config/perception.yaml's defaults unless --perception-params)")
    parser.add_argument("--perception-params", metavar="FILE",
                        help="perception node parameters file to compute the prefixes with "
                             "(implies --prefixes); give the same file to 'arvla train "
                             "--perception-params' so bring-up starts that perception")
    parser.add_argument("--keep-images", action="store_true",
                        help="with prefixes, also keep the frames in the episodes")
    parser.add_argument("--frame-stride", type=int, default=1,
                        help="one frame every N steps (default 1: every step)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per backbone batch")
    parser.add_argument("--tolerance-s", type=float, default=1e-4,
                        help="largest gap between a row's timestamp and its video frame's")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--joint-names", nargs="+", help="the state/action dimensions' joint names "
                                                         "(default: the dataset's feature names)")
    parser.add_argument("--episodes", type=int, nargs="+", help="only these episode indices")
    args = parser.parse_args(argv)
    perception: dict[str, Any] | None = None
    try:
        if args.perception_params:
            # the command line sits above the parts: it may read the perception node's parameters
            from arvla_base.params import read_node_params
            from arvla_perception.config import field_names

            fields = set(field_names())
            perception = {k: v for k, v in read_node_params(args.perception_params).items()
                          if k in fields}
        elif args.prefixes:
            perception = {}
        written = import_lerobot(args.root, args.output, episodes=args.episodes,
                                 image_key=args.image_key, state_key=args.state_key,
                                 action_key=args.action_key, perception=perception,
                                 keep_images=True if args.keep_images else None,
                                 frame_stride=args.frame_stride, batch_size=args.batch_size,
                                 tolerance_s=args.tolerance_s, joint_names=args.joint_names)
    except (ConfigError, EpisodeError) as err:
        print(f"arvla import-lerobot: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        from arvla_perception.backbone import BackboneError  # loaded by then, if it raised

        if not isinstance(err, BackboneError):
            raise
        print(f"arvla import-lerobot: perception backbone: {err}", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0

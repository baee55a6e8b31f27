"""``arvla dagger``: episodes the expert drives on the embedded robot, labelled by the task's
scripted demonstrator (DAgger; ``arvla_eval.dagger``), to train on with the demonstrations.

  arvla dagger --expert runs/train/stage2 --artefacts artifacts/demo/large --seeds 1000:1100 \\
      --out data/dagger                  # every task of the demo, its sim and demonstrator
  cp data/dagger/*/episodes/*.npz data/demos/ && arvla train --stage 2 --data data/demos ...

In process and deterministic (the perception delay emulated, ``--lag-steps``): the same
checkpoint and seeds give the same episodes. The robot executes the expert's command within
``--max-deviation`` (rad per arm joint; ``--max-deviation-gripper`` m) of the demonstrator's
label. Episodes are named ``<task>_<seed>.npz`` like the demonstrations: use other seeds than
theirs (and than the evaluation's) so that the names do not collide.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Any

from arvla_base.config import ConfigError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="arvla dagger", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expert", required=True, help="AR expert checkpoint that drives the robot")
    ap.add_argument("--out", required=True, help="output directory (<task>/episodes/*.npz)")
    ap.add_argument("--artefacts", help="the demo's artefacts: its tasks, sim, perception, expert "
                    "node parameters and demonstrator (motion profile, grasp retries, settle)")
    ap.add_argument("--task", action="append", help="sim task (repeat for several; default: the "
                    "artefacts' tasks, else pick_lift)")
    ap.add_argument("--seeds", default="1000:1100", help="episode seeds A:B (A..B-1) or a count N "
                    "from 1000 (default 1000:1100)")
    ap.add_argument("--max-deviation", type=float, default=0.05,
                    help="rad: an arm joint executes at most this far from the label (default 0.05)")
    ap.add_argument("--max-deviation-gripper", type=float, default=0.005,
                    help="m: the same for the finger opening (default 0.005)")
    ap.add_argument("--resync-m", type=float, default=0.0,
                    help="m: the demonstrator re-plans from the measured hand when it is further "
                         "than this off its plan (0 = never; labels then say where the plan is, "
                         "so keep --max-deviation small)")
    ap.add_argument("--lag-steps", type=int, default=2, help="perception delay in control steps")
    ap.add_argument("--motion-profile", help="the demonstrator's motion profile (default: the "
                    "artefacts', else trapezoid)")
    ap.add_argument("--grasp-retries", type=int, help="pick_lift demonstrator's tries after a miss")
    ap.add_argument("--drop-unsolved", action="store_true",
                    help="keep only episodes in which the task was solved")
    ap.add_argument("--workers", type=int, default=1, help="processes (the episodes do not depend on it)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _settings(args: argparse.Namespace) -> tuple[list[str], dict[str, Any], dict[str, Any],
                                                 dict[str, Any], dict[str, Any]]:
    """(tasks, sim, perception, expert node parameters, demonstrator settings)."""
    from arvla.perception_params import checkpoint_perception
    from arvla_eval.demo_artefacts import demo_layout

    layout: dict[str, Any] = {}
    if args.artefacts:
        found = demo_layout(pathlib.Path(args.artefacts))
        if found is None:
            raise ConfigError(f"--artefacts {args.artefacts}: not the demo's layout (run `arvla demo`)")
        layout = found
    recorded = checkpoint_perception(args.expert).settings
    perception = {**layout.get("perception", {}), **recorded}
    collect = dict(layout.get("collect", {}))
    demonstrator = {"motion_profile": args.motion_profile or collect.get("motion_profile", "trapezoid"),
                    "grasp_retries": (args.grasp_retries if args.grasp_retries is not None
                                      else int(collect.get("grasp_retries", 0))),
                    "settle_s": float(collect.get("settle_s", 0.25))}
    tasks = args.task or layout.get("tasks") or ["pick_lift"]
    return tasks, dict(layout.get("sim", {})), perception, dict(layout.get("expert_node", {})), demonstrator


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from arvla.commands.eval import _seed_range
    from arvla_action_expert.checkpoint import CheckpointError
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_eval.collect_ros import CollectConfig
    from arvla_eval.dagger import DaggerConfig, collect_dagger

    try:
        seeds = _seed_range(args.seeds, 1000, 100)
        tasks, sim, perception, node, demonstrator = _settings(args)
        policy = ExpertPolicy.from_checkpoint(args.expert)
        configs = [DaggerConfig(
            collect=CollectConfig(task=task, seeds=seeds, control_rate_hz=policy.control_rate_hz,
                                  prefixes="offline", only_success=False, sim=sim,
                                  perception=perception, **demonstrator),
            max_deviation=args.max_deviation, max_deviation_gripper=args.max_deviation_gripper,
            lag_steps=args.lag_steps, expert_params=node, keep_unsuccessful=not args.drop_unsolved,
            resync_m=args.resync_m)
            for task in tasks]
        for cfg in configs:
            out = pathlib.Path(args.out) / cfg.collect.task
            res = collect_dagger(policy, cfg, out, progress=not args.no_progress,
                                 workers=args.workers, resume=True)
            print(f"{cfg.collect.task}: {res.summary()} -> {out / 'episodes'}")
    except (ConfigError, CheckpointError) as err:
        print(f"arvla dagger: {err}", file=sys.stderr)
        return 2
    return 0


def main() -> int:
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

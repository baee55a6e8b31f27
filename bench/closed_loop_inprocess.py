"""Closed loop without ROS: SimEnv + perception backbone + ExpertPolicy in one thread.

    python bench/closed_loop_inprocess.py CHECKPOINT [--task pick_lift --task cued_reach ...]
        [--seeds 12 --seed0 100000 --lag 2 --frame-every 2 --hidden-layer 10 --grid 2 2]

For iterating on a training recipe: ~1 s per episode on one core, ~4x faster than the ROS
graph at real time, with the perception delay emulated (a frame captured at step c is installed
at step c + lag, as the node would receive it) and the policy stepping from the first prefix
on, as the node does. The ROS evaluation (`arvla demo`, `arvla eval`) stays the measurement
that counts; this is how the demo's recipe was chosen. Prints success per task.
"""

from __future__ import annotations

import argparse
import time

import torch

from arvla_action_expert.policy import ExpertPolicy
from arvla_eval import streaming
from arvla_perception.backbone import load_backbone
from arvla_perception.config import PerceptionConfig
from arvla_sim.env import SimEnv

MAX_SECONDS = {"pick_lift": 6.0, "push": 10.0, "cued_reach": 7.0}


def rollout(policy: ExpertPolicy, env: SimEnv, backbone, seed: int, *, lag: int,
            frame_every: int, before_step=None) -> dict:
    """One episode, each target held for one period (``arvla_eval.streaming.rollout`` in
    process); ``before_step(policy, env, newest)`` (optional) runs before every policy step,
    ``newest`` = (tokens, capture step) of the prefix in the slot."""
    return streaming.rollout(policy, env, backbone, seed, lag=lag, frame_every=frame_every,
                             before_step=before_step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--task", action="append")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--seed0", type=int, default=100000)
    ap.add_argument("--lag", type=int, default=2, help="perception delay, steps")
    ap.add_argument("--frame-every", type=int, default=2, help="camera period, steps")
    ap.add_argument("--hidden-layer", type=int, default=10)
    ap.add_argument("--grid", type=int, nargs=2, default=[2, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = ExpertPolicy.from_checkpoint(args.checkpoint)
    backbone = load_backbone(PerceptionConfig(image_size=128, hidden_layer=args.hidden_layer,
                                              token_grid=list(args.grid)))
    for task in args.task or ["pick_lift", "cued_reach", "push"]:
        env = SimEnv(task=task, image_height=128, image_width=128, max_duration_s=MAX_SECONDS[task])
        t0 = time.monotonic()
        res = [rollout(policy, env, backbone, s, lag=args.lag, frame_every=args.frame_every)
               for s in range(args.seed0, args.seed0 + args.seeds)]
        env.close()
        wins = sum(r["success"] for r in res)
        fails = sum(r["failure"] for r in res)
        print(f"{task}: success {wins}/{len(res)}, failed early {fails} "
              f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()

"""Does the AR expert use its memory? cued_reach with and without it, same checkpoint, same seeds.

    python bench/memory_ablation.py CHECKPOINT [--seeds 20 --wipe-before-s 0.3]

cued_reach (arvla_sim/tasks.py): touch the cued pad, come home, held 1.2 s, then touch the OTHER
pad. After the hold nothing observable depends on the goal, so the second leg needs a memory of
the first. The ablation wipes the expert's KV memory (``policy.reset()``, newest prefix
re-installed) ``--wipe-before-s`` before the hold ends: the step tokens it keeps all show the
arm resting at home. Prints, per arm, how the episodes ended:
``1ok/home/2ok`` = success; ``.../2bad`` = second touch on the cued pad again; ``1ok/home`` =
no second touch in time; ``1bad`` / ``1none`` = wrong / no first touch. A policy that uses its
memory has 2ok >> 2bad intact and 2ok ~ 2bad wiped. In process, like
bench/closed_loop_inprocess.py (whose loop this uses); the ROS evaluation is the measurement
that counts.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from arvla_action_expert.policy import ExpertPolicy
from arvla_perception.backbone import load_backbone
from arvla_perception.config import PerceptionConfig
from arvla_sim.env import SimEnv
from closed_loop_inprocess import MAX_SECONDS, rollout


def outcome(task) -> str:
    first = "1ok" if task.first == task.goal else "1bad" if task.first is not None else "1none"
    home = "/home" if task.held_at is not None else ""
    second = "" if task.second is None else "/2ok" if task.second != task.goal else "/2bad"
    return first + home + second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed0", type=int, default=100000)
    ap.add_argument("--wipe-before-s", type=float, default=0.3,
                    help="wipe the memory this long before the hold ends")
    ap.add_argument("--lag", type=int, default=2)
    ap.add_argument("--frame-every", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = ExpertPolicy.from_checkpoint(args.checkpoint)
    backbone = load_backbone(PerceptionConfig(image_size=128, hidden_layer=10, token_grid=[2, 2]))
    env = SimEnv(task="cued_reach", image_height=128, image_width=128,
                 max_duration_s=MAX_SECONDS["cued_reach"])
    for wipe in (False, True):
        state = {"wiped": False}

        def before_step(policy, env, newest, state=state):
            if wipe and not state["wiped"] and env.world.time >= env.task.release_at_s - args.wipe_before_s:
                policy.reset()
                policy.refresh_prefix(*newest)
                state["wiped"] = True

        t0 = time.monotonic()
        ends = Counter()
        for seed in range(args.seed0, args.seed0 + args.seeds):
            state["wiped"] = False
            rollout(policy, env, backbone, seed, lag=args.lag, frame_every=args.frame_every,
                    before_step=before_step)
            ends[outcome(env.task)] += 1
        label = f"memory wiped {args.wipe_before_s:g} s before release" if wipe else "memory intact"
        print(f"{label:36s} success {ends['1ok/home/2ok']}/{args.seeds}, second touch right/wrong "
              f"{ends['1ok/home/2ok']}/{ends['1ok/home/2bad']}  {dict(ends)} "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
    env.close()


if __name__ == "__main__":
    main()

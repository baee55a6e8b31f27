"""Offline diagnosis of a trained expert on recorded episodes: does it read the prefix?

    python bench/expert_openloop.py CHECKPOINT EPISODE_DIR [EPISODE_DIR ...] [--heldout 16]

Each EPISODE_DIR is one task's ``.npz`` episodes (the demo's ``collect/<task>-*/episodes``).
No ROS; replays the episodes through ``ExpertPolicy`` exactly as the node drives it (reset,
``refresh_prefix`` once a frame is ``--lag`` steps old, ``step`` every step) and prints:

1. open-loop MAE of the actions (teacher-forced states) vs the "hold the current state"
   baseline, for episodes ``< --heldout`` (train) and ``>= --heldout`` (held out, if the
   checkpoint was trained on the first ones only);
2. the same with another task's prefix tokens: equal numbers mean the prefix is ignored;
3. the step-0 decision: every task starts from the same state for the same seed, so only the
   prefix can tell the tasks apart there -- the error with the own prefix vs a wrong one, and
   how far the tasks' step-0 actions lie apart (what a task-blind guess costs).

Why: teacher-forced states leak the demonstrator's intent (after one step the motion names the
task and goal), so a small open-loop error says nothing about closed loop when (2) and (3) show
no prefix use. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from arvla_action_expert.data import Episode, NpzEpisodeDir
from arvla_action_expert.policy import ExpertPolicy


def replay(policy: ExpertPolicy, ep: Episode, tokens: np.ndarray, lag: int) -> float:
    """Open-loop MAE over the episode; frame f is installed at step frame_steps[f] + lag."""
    policy.reset()
    f, err = 0, []
    for t in range(ep.length):
        while f < len(ep.frame_steps) and ep.frame_steps[f] + lag <= t:
            f += 1
        if f and policy.prefix_capture_step != int(ep.frame_steps[f - 1]):
            policy.refresh_prefix(tokens[min(f - 1, len(tokens) - 1)], int(ep.frame_steps[f - 1]))
        err.append(np.abs(policy.step(ep.states[t], t)[0] - ep.actions[t]).mean())
    return float(np.mean(err))


def first_decision(policy: ExpertPolicy, ep: Episode, tokens: np.ndarray) -> float:
    """MAE of the step-0 action given ``ep``'s step-0 state and the prefix ``tokens``."""
    policy.reset()
    policy.refresh_prefix(tokens, 0)
    return float(np.abs(policy.step(ep.states[0], 0)[0] - ep.actions[0]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("episodes", nargs="+", help="one directory of .npz episodes per task")
    ap.add_argument("--heldout", type=int, default=10**9,
                    help="episode index from which episodes count as held out")
    ap.add_argument("--lag", type=int, default=2, help="perception delay in steps")
    ap.add_argument("--max-episodes", type=int, default=6, help="per task and split")
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = ExpertPolicy.from_checkpoint(args.checkpoint)
    dirs = [NpzEpisodeDir(d) for d in args.episodes]
    for i, d in enumerate(dirs):
        other = dirs[(i + 1) % len(dirs)]
        name = d[0].task or str(d.root)
        splits = {"train": range(0, min(len(d), args.heldout)),
                  "heldout": range(min(len(d), args.heldout), len(d))}
        for split, idx in splits.items():
            idx = [e for e in idx if e < len(other)][:args.max_episodes]
            if not idx:
                continue
            own = np.mean([replay(policy, d[e], d[e].frame_tokens, args.lag) for e in idx])
            wrong = np.mean([replay(policy, d[e], other[e].frame_tokens, args.lag) for e in idx])
            hold = np.mean([np.abs(d[e].states - d[e].actions).mean() for e in idx])
            s0_own = np.mean([first_decision(policy, d[e], d[e].frame_tokens[0]) for e in idx])
            s0_wrong = np.mean([first_decision(policy, d[e], other[e].frame_tokens[0])
                                for e in idx])
            spread = np.mean([np.abs(other[e].actions[0] - d[e].actions[0]).mean() for e in idx])
            print(f"{name[:28]:28s} {split:7s} n={len(idx)}  open-loop MAE {own:.4f} "
                  f"(hold {hold:.4f}, ratio {own / hold:.2f}; other task's prefix {wrong:.4f})  "
                  f"step-0 MAE own prefix {s0_own:.4f}, other's {s0_wrong:.4f}, "
                  f"tasks apart {spread:.4f}")


if __name__ == "__main__":
    main()

"""Where a policy's motion goes wrong, read off the sim's ground truth (ROS-free).

Success rates say that a policy fails, not how. These probes log, every control step of an
in-process episode, what the simulator knows and the policy does not (the hand's site, the
object's and the goal's positions, the finger opening) and reduce it to the few numbers that
decide the two manipulation tasks:

- ``pick_lift``: where the hand is, relative to the cube, at the step the fingers start to
  close (``grasp_offset``). A grasp more than ~1.5 cm off the cube's centre closes on nothing.
  ``approach``: the part of that offset along the hand's way from where it started (-: it
  stopped short, as if it had moved a typical distance rather than the one the cube asks for).
- ``push``: where the hand comes down relative to the demonstrator's descent point behind the
  block (``PushExpert.approach_gap`` behind its face, on the block -> target line), and the
  hand's height while the block moves (``push_motion``): a hand that comes down on the block
  instead of behind it rides on its top edge (site ~0.098 m, fingertips on the 5 cm block)
  and drags it slowly instead of pushing it.

``bench/failure_modes.py`` runs them for checkpoints side by side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["GraspOffset", "PushMotion", "StepLog", "grasp_offset", "push_motion"]


class StepLog:
    """A ``streaming.rollout`` ``before_step`` hook: the hand site, the task's object (and
    goal) positions and the finger opening at every control step, before the policy acts."""

    def __init__(self, task: str) -> None:
        if task not in ("pick_lift", "push"):
            raise ValueError(f"no probe for task {task!r} (pick_lift, push)")
        self.task = task
        self.rows: list[np.ndarray] = []

    def __call__(self, policy: Any, env: Any, newest: Any) -> None:
        w = env.world
        obj = w.body_pos("cube" if self.task == "pick_lift" else "block")
        goal = w.body_pos("target") if self.task == "push" else np.zeros(3)
        opening = float(env.observe()["state"][7])
        self.rows.append(np.concatenate([w.ee_pos(), obj, goal, [opening]]))

    def arrays(self) -> dict[str, np.ndarray]:
        """hand (T, 3), obj (T, 3), goal (T, 3), opening (T,)."""
        a = np.asarray(self.rows, np.float64).reshape(-1, 10)
        return {"hand": a[:, 0:3], "obj": a[:, 3:6], "goal": a[:, 6:9], "opening": a[:, 9]}


@dataclasses.dataclass
class GraspOffset:
    step: int          # control step the fingers started to close (-1: they never did)
    dx: float          # hand site - cube centre at that step, m (world x: away from the base)
    dy: float
    dz: float
    approach: float = float("nan")    # the xy offset along the hand's start -> cube direction
    #                                   (-: stopped short of the cube, +: past it)
    approach_dist: float = float("nan")   # hand's start -> cube centre, xy, m
    cube_x: float = float("nan")          # where the cube was placed (its centre at step 0), m
    cube_y: float = float("nan")
    close_move: float = float("nan")      # how far the hand moves in xy while the fingers close
    #                                       (the ``close_steps`` after they start), m
    close_rise: float = float("nan")      # its height change over those steps (+: lifting), m
    cube_shift: float = float("nan")      # how far the cube is shoved in xy over those steps, m
    opening_after: float = float("nan")   # the finger opening ``close_steps`` after (the cube
    #                                       held: ~its width; closed on nothing: ~0), m
    cube_lift: float = float("nan")       # the cube's highest rise after the close began, m

    @property
    def dxy(self) -> float:
        return float(np.hypot(self.dx, self.dy))


def grasp_offset(hand: np.ndarray, obj: np.ndarray, opening: np.ndarray, *,
                 closing_m: float = 0.005, close_steps: int = 8) -> GraspOffset:
    """The hand's offset from the cube when the fingers first close ``closing_m`` below the
    widest opening so far, and how the hand and the cube move over the ``close_steps`` after."""
    widest = np.maximum.accumulate(opening)
    closing = np.flatnonzero(opening < widest - closing_m)
    if closing.size == 0:
        return GraspOffset(-1, float("nan"), float("nan"), float("nan"),
                           cube_x=float(obj[0, 0]), cube_y=float(obj[0, 1]))
    i = int(closing[0])
    d = hand[i] - obj[i]
    along, dist = _along_approach(hand[0, :2], obj[i, :2], hand[i, :2])
    j = min(i + close_steps, len(hand) - 1)
    return GraspOffset(i, float(d[0]), float(d[1]), float(d[2]), approach=along, approach_dist=dist,
                       cube_x=float(obj[0, 0]), cube_y=float(obj[0, 1]),
                       close_move=float(np.linalg.norm(hand[j, :2] - hand[i, :2])),
                       close_rise=float(hand[j, 2] - hand[i, 2]),
                       cube_shift=float(np.linalg.norm(obj[j, :2] - obj[i, :2])),
                       opening_after=float(opening[j]), cube_lift=float(obj[i:, 2].max() - obj[i, 2]))


def _along_approach(start: np.ndarray, aim: np.ndarray, reached: np.ndarray) -> tuple[float, float]:
    """(reached - aim) along the start -> aim direction (-: short of it), |aim - start|."""
    a = aim - start
    dist = float(np.linalg.norm(a))
    return (float((reached - aim) @ (a / dist)) if dist > 1e-9 else 0.0), dist


@dataclasses.dataclass
class PushMotion:
    descent_step: int     # first step the hand site is below ``descent_z`` (-1: never)
    along: float          # hand - descent point at that step, along block -> target (+: onto the block)
    lateral: float        # |hand - descent point| across the line
    push_height: float    # median hand site height while the block moves (nan: it never did)
    progress: float       # block's net move toward the target, m
    remaining: float      # block centre -> target at the end, m
    approach: float = float("nan")       # hand - descent point along the hand's start -> descent
    #                                      point direction (-: stopped short)
    approach_dist: float = float("nan")  # hand's start -> descent point, xy, m


def push_motion(hand: np.ndarray, obj: np.ndarray, goal: np.ndarray, *, half: float,
                approach_gap: float, descent_z: float = 0.12, moving_m: float = 2.5e-4) -> PushMotion:
    """The push's descent point and height (see the module doc). ``half``: the block's half
    size; ``approach_gap``: the demonstrator's gap behind its face; ``moving_m``: per-step
    block motion that counts as moving."""
    u = goal[0, :2] - obj[0, :2]
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    below = np.flatnonzero(hand[:, 2] < descent_z)
    along, lateral, approach, approach_dist, i = (float("nan"),) * 4 + (-1,)
    if below.size:
        i = int(below[0])
        aim = obj[i, :2] - u * (half + approach_gap)
        e = hand[i, :2] - aim
        along, lateral = float(e @ u), float(abs(e[0] * u[1] - e[1] * u[0]))
        approach, approach_dist = _along_approach(hand[0, :2], aim, hand[i, :2])
    moves = np.linalg.norm(np.diff(obj[:, :2], axis=0), axis=1) > moving_m
    height = float(np.median(hand[:-1][moves, 2])) if moves.any() else float("nan")
    progress = float((obj[-1, :2] - obj[0, :2]) @ u)
    remaining = float(np.linalg.norm(obj[-1, :2] - goal[-1, :2]))
    return PushMotion(i, along, lateral, height, progress, remaining, approach, approach_dist)

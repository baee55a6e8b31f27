"""Tabletop tasks: objects they add to the scene, seeded randomisation, success/failure checks.

ROS-free. A task owns its objects' MJCF (added to the Panda scene at build time), places them
on ``reset(world, rng)``, changes the scene over time in ``update(world)`` (the memory task's
cue), and judges ``success`` / ``failure`` from the physical state. ``privileged(world)`` is
the ground truth the scripted experts plan from -- never an input to a learned policy.

Tasks:
* ``pick_lift``: grasp the red cube and lift it 10 cm.
* ``push``: push the blue block onto the green target disc (gripper closed).
* ``cued_reach`` (MEMORY, after the paper's PushT2: two goals in order): two identical grey
  pads; a green cue lamp shines above one of them for the first ``cue_duration_s`` seconds only.
  The arm must touch the cued pad, come back to its start position, and then touch the OTHER
  pad. Back home, the task holds the arm at its start posture for ``hold_s`` (``arm_locked``:
  commands are not executed, like brakes: ``SimEnv.command`` glides the targets from the last
  command to the start posture in ``SimEnv.LOCK_GLIDE_S``), longer than an action chunk (0.8 s
  at 20 Hz) plus perception lag. After the hold, image and proprioception no longer depend on the goal (the
  scene is mirror symmetric, the cue is gone, the posture is the start posture): only a memory
  of the first leg -- the paper's proprio/action history -- tells which pad is left, and a
  memoryless policy is at chance (50 %). Touching the cued pad again fails, as does a wrong
  first touch; touches on the way back do not count.
  (The earlier version asked for a single touch after a still wait: the cue then had to live
  in the expert's deep keys alone, as no proprio token differed, and every policy was at chance;
  without the lock a chunked policy had stored the goal in its own posture drift.)
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from arvla_sim.robot import PandaWorld

TABLE_Z = 0.0
HIDDEN = np.array([0.3, 0.0, -0.5])   # under the table top: invisible to the camera


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class Task(abc.ABC):
    """Base class; subclasses are small and declarative."""

    name: str = ""
    instruction: str = ""
    max_duration_s: float = 10.0

    @abc.abstractmethod
    def world_xml(self) -> str:
        """Bodies added to the worldbody (objects, markers)."""

    @abc.abstractmethod
    def reset(self, world: "PandaWorld", rng: np.random.Generator) -> None:
        """Place objects for a new episode (world already reset to the home posture)."""

    def update(self, world: "PandaWorld") -> None:
        """Time-dependent scene changes; called after every physics chunk."""

    @abc.abstractmethod
    def success(self, world: "PandaWorld") -> bool:
        ...

    def failure(self, world: "PandaWorld") -> bool:
        """An unrecoverable outcome (ends the episode as failed); default: none."""
        return False

    def arm_locked(self, world: "PandaWorld") -> bool:
        """True while the task holds the arm at its start posture (commands are not executed,
        like brakes that are released on a go signal); default: never."""
        return False

    @abc.abstractmethod
    def privileged(self, world: "PandaWorld") -> dict[str, np.ndarray]:
        """Ground-truth quantities for scripted experts and logging."""


class PickLift(Task):
    name = "pick_lift"
    instruction = "pick up the red cube and lift it"
    max_duration_s = 8.0
    half = 0.02            # cube half size (4 cm cube fits the 8 cm gripper)
    lift_height = 0.10

    def world_xml(self) -> str:
        return f"""
    <body name="cube" pos="0.5 0 {self.half}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{self.half} {self.half} {self.half}" rgba=".85 .15 .12 1"
            mass="0.05" friction="1.5 0.05 0.001" condim="4"/>
    </body>"""

    def reset(self, world, rng):
        xy = np.array([rng.uniform(0.42, 0.62), rng.uniform(-0.18, 0.18)])
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        world.set_free_body("cube_joint", [xy[0], xy[1], self.half + 1e-4], _yaw_quat(yaw))

    def success(self, world):
        return bool(world.body_pos("cube")[2] > self.half + self.lift_height)

    def privileged(self, world):
        return {"object_pos": world.body_pos("cube"), "object_quat": world.body_quat("cube"),
                "object_half": np.array([self.half])}


class Push(Task):
    name = "push"
    instruction = "push the blue block onto the green target"
    max_duration_s = 10.0
    half = 0.025
    tolerance = 0.04       # m, block centre to target centre (xy)

    def world_xml(self) -> str:
        return f"""
    <body name="block" pos="0.5 0 {self.half}">
      <freejoint name="block_joint"/>
      <geom name="block" type="box" size="{self.half} {self.half} {self.half}" rgba=".15 .3 .85 1"
            mass="0.2" friction="0.4 0.005 0.0001"/>
    </body>
    <body name="target" mocap="true" pos="0.6 0 0.0005">
      <geom name="target" type="cylinder" size="0.04 0.0005" rgba=".2 .8 .25 1" contype="0" conaffinity="0"/>
    </body>"""

    def reset(self, world, rng):
        while True:
            obj = np.array([rng.uniform(0.42, 0.62), rng.uniform(-0.15, 0.15)])
            tgt = np.array([rng.uniform(0.42, 0.62), rng.uniform(-0.2, 0.2)])
            if 0.12 <= np.linalg.norm(tgt - obj) <= 0.25:
                break
        world.set_free_body("block_joint", [obj[0], obj[1], self.half + 1e-4], _yaw_quat(rng.uniform(-0.3, 0.3)))
        world.set_mocap("target", [tgt[0], tgt[1], 0.0005])

    def _dist(self, world) -> float:
        return float(np.linalg.norm(world.body_pos("block")[:2] - world.body_pos("target")[:2]))

    def success(self, world):
        return self._dist(world) < self.tolerance

    def failure(self, world):
        return bool(world.body_pos("block")[2] < -0.05)   # knocked off the table

    def privileged(self, world):
        return {"object_pos": world.body_pos("block"), "object_quat": world.body_quat("block"),
                "target_pos": world.body_pos("target"), "object_half": np.array([self.half])}


class CuedReach(Task):
    """MEMORY task: see the module docstring."""

    name = "cued_reach"
    instruction = "touch the pad that was lit up, come back, then touch the other pad"
    max_duration_s = 9.0
    cue_duration_s = 0.75
    hold_s = 1.2           # held at home between the legs: > a chunk (0.8 s) + perception lag
    home_radius = 0.06     # EE within this of its start position, after the first touch = home
    pad_radius = 0.06      # the pads are >= 0.24 m apart and ~0.2 m from home
    touch_height = 0.085   # EE site (~5 cm above the fingertips) below this over a pad = touching it
    cue_height = 0.10

    def world_xml(self) -> str:
        pads = "".join(f"""
    <body name="pad{i}" mocap="true" pos="0.5 {0.15 * (1 - 2 * i)} 0.004">
      <geom name="pad{i}" type="cylinder" size="{self.pad_radius} 0.004" rgba=".55 .55 .58 1"/>
    </body>""" for i in range(2))
        return pads + """
    <body name="cue" mocap="true" pos="0.3 0 -0.5">
      <geom name="cue" type="sphere" size="0.03" rgba=".1 .95 .2 1" contype="0" conaffinity="0"/>
    </body>"""

    def reset(self, world, rng):
        goal = int(rng.integers(2))
        x = rng.uniform(0.45, 0.6)
        dy = rng.uniform(0.12, 0.2)
        self.pads = np.array([[x, dy, 0.004], [x, -dy, 0.004]])
        for i in range(2):
            world.set_mocap(f"pad{i}", self.pads[i])
        world.forward()
        self.home_pos = world.ee_pos().copy()
        self.set_goal(world, goal)

    def set_goal(self, world, goal: int) -> None:
        """Choose the cued pad (0: +y, 1: -y) -- e.g. to balance goals in an evaluation."""
        if goal not in (0, 1):
            raise ValueError(f"goal must be 0 or 1, got {goal!r}")
        self.goal = goal
        self._cue_pos = self.pads[goal] + np.array([0.0, 0.0, self.cue_height])
        world.set_mocap("cue", self._cue_pos if self.cue_visible(world) else HIDDEN)
        world.forward()
        self.first: int | None = None        # pad of the first touch
        self.held_at: float | None = None    # when the arm came home after it (hold starts)
        self.second: int | None = None       # pad of the first touch after the hold

    def cue_visible(self, world) -> bool:
        return world.time < self.cue_duration_s

    @property
    def release_at_s(self) -> float:
        """When the hold at home ends (inf until the arm is home after the first touch)."""
        return np.inf if self.held_at is None else self.held_at + self.hold_s

    def arm_locked(self, world) -> bool:
        return self.held_at is not None and world.time < self.release_at_s

    def _touched(self, world) -> int | None:
        ee = world.ee_pos()
        for i in range(2):
            if ee[2] < self.touch_height and np.linalg.norm(ee[:2] - self.pads[i, :2]) < self.pad_radius:
                return i
        return None

    def update(self, world):
        world.set_mocap("cue", self._cue_pos if self.cue_visible(world) else HIDDEN)
        if self.first is None:
            self.first = self._touched(world)
        elif self.held_at is None:     # on the way back: touches do not count, home starts the hold
            if np.linalg.norm(world.ee_pos() - self.home_pos) < self.home_radius:
                self.held_at = world.time
        elif self.second is None and world.time >= self.release_at_s:
            self.second = self._touched(world)

    def success(self, world):
        return self.first == self.goal and self.second == 1 - self.goal

    def failure(self, world):
        return (self.first is not None and self.first != self.goal) or self.second == self.goal

    def privileged(self, world):
        return {"goal_pos": self.pads[self.goal].copy(), "other_pos": self.pads[1 - self.goal].copy(),
                "goal_index": np.array([self.goal]), "home_pos": self.home_pos.copy(),
                "release_at_s": np.array([self.release_at_s])}


TASKS: dict[str, type[Task]] = {t.name: t for t in (PickLift, Push, CuedReach)}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; known: {sorted(TASKS)}")
    return TASKS[name]()

"""``SimEnv``: the ROS-free episode loop -- reset(seed) / step(joint_targets) / render() / success().

One control step holds the given joint targets for ``1 / control_rate_hz`` seconds of physics
(zero-order hold, like a joint_trajectory_controller that is handed one point per period), then
lets the task update the scene. Observations carry the 8-D robot state (``JOINT_NAMES`` order:
7 arm joint positions + gripper opening) and, separately, the privileged ground truth that only
scripted experts may use.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from arvla_base.config import require
from arvla_sim.motion import quintic, quintic_at
from arvla_sim.robot import HOME_Q, JOINT_NAMES, PHYSICS_DT, PandaWorld
from arvla_sim.tasks import TASKS, Task, make_task


@dataclasses.dataclass
class SimEnvConfig:
    """The simulated episode."""

    task: str = "pick_lift"           # one of arvla_sim.tasks.TASKS
    control_rate_hz: float = 20.0      # policy/expert rate; physics runs at 500 Hz underneath
    image_height: int = 224
    image_width: int = 224
    max_duration_s: float = 0.0        # 0 = the task's own limit
    home_noise: float = 0.02           # rad, uniform noise on the start posture (seeded)

    def __post_init__(self) -> None:
        require(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        require(0 < self.control_rate_hz <= 1.0 / PHYSICS_DT, "control_rate_hz", self.control_rate_hz,
                f"must be in (0, {1.0 / PHYSICS_DT:g}]")
        substeps = (1.0 / self.control_rate_hz) / PHYSICS_DT
        require(abs(substeps - round(substeps)) < 1e-6, "control_rate_hz", self.control_rate_hz,
                f"must divide the physics rate {1.0 / PHYSICS_DT:g} Hz evenly")
        require(16 <= self.image_height <= 480, "image_height", self.image_height, "must be in [16, 480]")
        require(16 <= self.image_width <= 640, "image_width", self.image_width, "must be in [16, 640]")
        require(self.max_duration_s >= 0, "max_duration_s", self.max_duration_s, "must be >= 0")
        require(0 <= self.home_noise <= 0.2, "home_noise", self.home_noise, "must be in [0, 0.2]")

    @property
    def substeps(self) -> int:
        return int(round((1.0 / self.control_rate_hz) / PHYSICS_DT))


class SimEnv:
    """A task in the Panda world. ``reset(seed)`` must be called before ``step``."""

    joint_names = JOINT_NAMES
    LOCK_GLIDE_S = 0.4   # the arm lock's glide to the start posture (Task.arm_locked)

    def __init__(self, config: SimEnvConfig | None = None, **overrides: Any):
        self.config = config or SimEnvConfig(**overrides)
        self.task: Task = make_task(self.config.task)
        self.world = PandaWorld(world=self.task.world_xml(),
                                image_size=(self.config.image_height, self.config.image_width))
        self.step_index = 0
        self.seed: int | None = None
        self.start_q = HOME_Q.copy()   # the posture of the last reset (held while locked)
        self._lock_glide: tuple[float, np.ndarray] | None = None   # (start time, quintic)

    @property
    def dt(self) -> float:
        return 1.0 / self.config.control_rate_hz

    @property
    def max_steps(self) -> int:
        limit = self.config.max_duration_s or self.task.max_duration_s
        return int(round(limit * self.config.control_rate_hz))

    def reset(self, seed: int) -> dict[str, Any]:
        """Same seed -> same episode (start posture, object placement, goal)."""
        rng = np.random.default_rng(seed)
        self.seed = seed
        q = HOME_Q.copy()
        q[:7] += rng.uniform(-self.config.home_noise, self.config.home_noise, size=7)
        self.world.reset(q)
        self.start_q = q.copy()
        self._lock_glide = None
        self.task.reset(self.world, rng)
        self.task.update(self.world)
        self.world.forward()
        self.step_index = 0
        return self.observe()

    def command(self, joint_targets: np.ndarray) -> None:
        """Set the actuator targets (8,) -- or, while the task locks the arm
        (``Task.arm_locked``), whoever sends the command, hold it at the start posture: the
        targets glide there from the last target, at the arm's velocity, when the lock engages (a
        quintic over ``LOCK_GLIDE_S``, like brakes; a jump of the targets would read as a
        jerk spike of whichever policy brought the arm home) and stay."""
        if not self.task.arm_locked(self.world):
            self._lock_glide = None
            self.world.set_targets(joint_targets)
            return
        if self._lock_glide is None:   # the brakes engage: from the arm's motion to the start posture
            world = self.world
            c = quintic(world.targets(), world.velocities(), np.zeros(len(self.start_q)),
                        self.start_q, self.LOCK_GLIDE_S)
            self._lock_glide = (world.time, c)
        t0, c = self._lock_glide
        self.world.set_targets(quintic_at(c, min(self.world.time - t0, self.LOCK_GLIDE_S))[0])

    def step_physics(self, n: int) -> None:
        """Advance ``n`` physics steps with the current targets, then update the task."""
        self.world.step(n)
        self.task.update(self.world)

    def step(self, joint_targets: np.ndarray) -> dict[str, Any]:
        """Hold ``joint_targets`` (8,) for one control period; returns the new observation."""
        if self.seed is None:
            raise RuntimeError("SimEnv.step before reset(seed)")
        self.command(joint_targets)
        self.step_physics(self.config.substeps)
        self.step_index += 1
        return self.observe()

    def observe(self) -> dict[str, Any]:
        return {"state": self.world.positions().astype(np.float32),
                "velocity": self.world.velocities().astype(np.float32),
                "step": self.step_index, "time": self.world.time,
                "privileged": self.task.privileged(self.world)}

    def render(self) -> np.ndarray:
        return self.world.render()

    def success(self) -> bool:
        return self.task.success(self.world)

    def failure(self) -> bool:
        return self.task.failure(self.world)

    def done(self) -> bool:
        return self.success() or self.failure() or self.step_index >= self.max_steps

    def close(self) -> None:
        self.world.close()

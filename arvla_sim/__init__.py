"""arvla_sim: the embedded default robot -- a MuJoCo Panda on a table behind a
joint_trajectory_controller-like interface, with seeded tasks and scripted IK experts.

ROS-free core: ``robot`` (world), ``jtc`` (trajectory follower), ``tasks``, ``env`` (SimEnv),
``experts``, ``collect``. ROS adapter: ``node`` (SimNode).
"""

from __future__ import annotations

import os

# MuJoCo picks its OpenGL backend when it is first imported; headless machines need EGL (or
# OSMesa). Respect a user's choice, default to EGL.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

__all__ = ["robot", "jtc", "tasks", "env", "experts", "collect"]

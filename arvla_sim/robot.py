"""The MuJoCo world: a Franka Panda (7 joints + parallel gripper) on a table, with a camera.

ROS-free. The Panda's kinematic chain and meshes come from the installed ``gymnasium-robotics``
wheel (``envs/assets/kitchen_franka/franka_assets``, Apache-2.0), referenced by path at run time
rather than copied into this repository. We write our own asset/default section so that the
*collision* meshes double as visuals (roughly 3x cheaper to render than the visual meshes, and
what a 224x224 policy camera can resolve anyway), and switch on gravity compensation for every
robot body so the stiff position actuators track their targets without a gravity sag -- the
same thing a real Panda's torque controller does underneath its joint position interface.

Joint naming (ROS side; see ``JOINT_NAMES``): the seven arm joints are ``panda_joint1..7``; the
gripper is one more position-controlled joint ``panda_finger_joint1`` (opening of ONE finger in
metres, 0 = closed .. 0.04 = open). Both MuJoCo finger actuators receive the same target, i.e.
``panda_finger_joint2`` is a mimic joint and is not exposed. The arm controller therefore drives
8 joints and the policy's state/action vectors are those 8 values in ``JOINT_NAMES`` order.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Sequence

import numpy as np

ARM_JOINTS: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
GRIPPER_JOINT = "panda_finger_joint1"
JOINT_NAMES: tuple[str, ...] = ARM_JOINTS + (GRIPPER_JOINT,)
GRIPPER_OPEN = 0.04    # m per finger
GRIPPER_CLOSED = 0.0

# ROS joint name -> joint name inside the gymnasium-robotics MJCF.
_MJ_JOINT = {**{f"panda_joint{i}": f"robot:panda0_joint{i}" for i in range(1, 8)},
             GRIPPER_JOINT: "robot:panda0_finger_joint1"}
_MJ_FINGER2 = "robot:panda0_finger_joint2"
_MJ_ACTUATORS = tuple(f"panda0_joint{i}" for i in range(1, 8))
_MJ_FINGER_ACTUATORS = ("r_gripper_finger_joint", "l_gripper_finger_joint")

# The embedded robot's velocity limits, in JOINT_NAMES order: the Panda's (rad/s) + the finger
# (m/s; the scripted experts open/close it within ~2 control periods, the learned expert must be
# allowed the same). The one place they live: evaluation and config/action_expert.yaml follow.
MAX_VELOCITY: tuple[float, ...] = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61, 1.0)

# A comfortable "ready" posture: gripper pointing down ~0.45 m above the table in front of the base.
HOME_Q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 0.33, 0.785, GRIPPER_OPEN])

EE_SITE = "end_effector"     # site between the fingertips (from the wheel's chain.xml)
CAMERA = "front"
PHYSICS_DT = 0.002           # s (500 Hz), the wheel's own timestep


class SimError(RuntimeError):
    """The simulator cannot be built or used (missing assets, no renderer, bad input)."""


def franka_assets_dir() -> pathlib.Path:
    """Locate the Panda MJCF + meshes inside the installed gymnasium-robotics wheel.

    Uses ``find_spec`` instead of importing the package: importing it registers gymnasium envs
    and prints deprecation banners, none of which we need.
    """
    override = os.environ.get("ARVLA_FRANKA_ASSETS")
    if override:
        path = pathlib.Path(override)
    else:
        spec = importlib.util.find_spec("gymnasium_robotics")
        if spec is None or not spec.submodule_search_locations:
            raise SimError("gymnasium-robotics is not installed; `pip install gymnasium-robotics` "
                           "(it ships the Panda MJCF and meshes) or set ARVLA_FRANKA_ASSETS")
        root = pathlib.Path(list(spec.submodule_search_locations)[0])
        path = root / "envs" / "assets" / "kitchen_franka" / "franka_assets"
    for needed in ("chain.xml", "actuator.xml", "meshes/collision/link0.stl"):
        if not (path / needed).is_file():
            raise SimError(f"Panda assets incomplete: {path / needed} not found")
    return path


def _robot_assets_xml(meshdir: pathlib.Path) -> str:
    """Mesh + default classes that the wheel's chain.xml/actuator.xml refer to by name."""
    links = [f"link{i}" for i in range(8)] + ["hand"]
    meshes = "\n".join(
        f'<mesh name="{n}_col" file="collision/{n}.stl"/><mesh name="{n}_viz" file="collision/{n}.stl"/>'
        for n in links)
    return f"""
  <compiler angle="radian" meshdir="{meshdir}"/>
  <asset>
    {meshes}
    <mesh name="finger_viz" file="collision/finger.stl" scale="1.75 1.0 1.75"/>
  </asset>
  <default>
    <default class="panda">
      <joint pos="0 0 0" axis="0 0 1" limited="true"/>
      <position forcelimited="true" ctrllimited="true"/>
      <default class="panda_viz">
        <geom contype="0" conaffinity="0" group="0" type="mesh" rgba=".92 .93 .95 1" mass="0"/>
      </default>
      <default class="panda_col">
        <geom contype="1" conaffinity="1" group="3" type="mesh"/>
      </default>
      <default class="panda_arm"><joint damping="100"/></default>
      <default class="panda_forearm"><joint damping="10"/></default>
      <default class="panda_finger">
        <joint damping="100" armature="5"/>
        <geom friction="1.5 0.5 0.0001" solref="0.01 1" solimp="0.8 0.9 0.001" margin="0.001"
              rgba=".3 .3 .35 1" contype="1" conaffinity="1" condim="4" group="3"/>
      </default>
    </default>
  </default>"""


def scene_xml(*, world: str = "", assets: str = "", assets_dir: pathlib.Path | None = None) -> str:
    """The full MJCF: table, lights, camera, the Panda at the origin, plus task ``world`` bodies.

    The table top is the plane z = 0 (the robot base stands on it); the workspace in front of the
    robot is x in [0.3, 0.75], y in [-0.3, 0.3].
    """
    d = assets_dir or franka_assets_dir()
    return f"""<mujoco model="arvla_panda_table">
  {_robot_assets_xml(d / "meshes")}
  <option timestep="{PHYSICS_DT}" integrator="implicitfast"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="0"/>
    <headlight ambient=".35 .35 .35" diffuse=".5 .5 .5" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="wood" type="2d" builtin="flat" rgb1=".62 .5 .38" width="8" height="8"/>
    <material name="table" texture="wood" rgba="1 1 1 1"/>
    {assets}
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 2" dir="0.2 0.1 -1" diffuse=".5 .5 .5" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 .1" rgba=".25 .27 .3 1"/>
    <geom name="table" type="box" pos="0.3 0 -0.025" size="0.65 0.6 0.025" material="table"/>
    <camera name="{CAMERA}" pos="1.0 0 0.75" xyaxes="0 1 0 -0.653 0 0.757" fovy="55"/>
    <body name="robot_base" pos="0 0 0">
      <include file="{d / 'chain.xml'}"/>
    </body>
    {world}
  </worldbody>
  <include file="{d / 'actuator.xml'}"/>
</mujoco>"""


def build_model(*, world: str = "", assets: str = "") -> "mujoco.MjModel":  # noqa: F821
    """Compile the scene with gravity compensation on every robot body (see module docstring)."""
    import mujoco

    try:
        spec = mujoco.MjSpec.from_string(scene_xml(world=world, assets=assets))
        for body in spec.bodies:
            if body.name.startswith("panda0_"):
                body.gravcomp = 1.0
        return spec.compile()
    except ValueError as err:  # MuJoCo reports XML/compile problems as ValueError
        raise SimError(f"could not build the MuJoCo scene: {err}") from err


def _release_gl_context() -> None:
    """Un-bind the EGL context from the calling thread after a render.

    An EGL context can be current in one thread only; MuJoCo's renderer makes it current on
    every render but never releases it, so the next render from another thread (a ROS
    multi-threaded executor runs the sim node's callbacks on any pool thread) fails with
    EGL_BAD_ACCESS. OSMesa has no such rule.
    """
    if os.environ.get("MUJOCO_GL") != "egl":
        return
    from mujoco import egl

    if egl.EGL_DISPLAY is not None:
        egl.EGL.eglMakeCurrent(egl.EGL_DISPLAY, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_SURFACE,
                               egl.EGL.EGL_NO_CONTEXT)


class PandaWorld:
    """A compiled scene + its state: set joint targets, step physics, read joints, render.

    Everything an outer layer needs (the env for data collection, the ROS node, the experts'
    IK) goes through these few methods, so none of them touch MuJoCo indices directly.
    """

    def __init__(self, *, world: str = "", assets: str = "", image_size: tuple[int, int] = (224, 224)):
        import mujoco

        self._mj = mujoco
        self.model = build_model(world=world, assets=assets)
        self.data = mujoco.MjData(self.model)
        m = self.model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, _MJ_JOINT[n]) for n in JOINT_NAMES]
        self.qpos_adr = np.array([m.jnt_qposadr[j] for j in jid])   # JOINT_NAMES order
        self.dof_adr = np.array([m.jnt_dofadr[j] for j in jid])
        self._finger2_qadr = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, _MJ_FINGER2)]
        self._finger2_dadr = m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, _MJ_FINGER2)]
        act = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in _MJ_ACTUATORS]
        self._arm_act = np.array(act)
        self._finger_act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
                                     for a in _MJ_FINGER_ACTUATORS])
        self.ee_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        lo = m.jnt_range[jid, 0].copy()
        hi = m.jnt_range[jid, 1].copy()
        self.lower, self.upper = lo, hi            # joint limits in JOINT_NAMES order
        self.image_size = image_size
        self._renderer = None
        self._camera = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)

    # --- state -------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(self, q: Sequence[float] = HOME_Q) -> None:
        """Robot at ``q`` (8 values, JOINT_NAMES order) at rest, targets = q, time 0."""
        self._mj.mj_resetData(self.model, self.data)
        q = self._check(q)
        self.data.qpos[self.qpos_adr] = q
        self.data.qpos[self._finger2_qadr] = q[-1]
        self.set_targets(q)
        self._mj.mj_forward(self.model, self.data)

    def _check(self, q: Sequence[float]) -> np.ndarray:
        arr = np.asarray(q, dtype=np.float64)
        if arr.shape != (len(JOINT_NAMES),):
            raise SimError(f"expected {len(JOINT_NAMES)} joint values {JOINT_NAMES}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise SimError(f"joint values must be finite, got {arr.tolist()}")
        return arr

    def set_targets(self, q: Sequence[float]) -> None:
        """Position targets for the 8 controlled joints (clipped to the actuator ranges)."""
        q = self._check(q)
        self.data.ctrl[self._arm_act] = q[:7]
        self.data.ctrl[self._finger_act] = q[7]
        lo = self.model.actuator_ctrlrange[:, 0]
        hi = self.model.actuator_ctrlrange[:, 1]
        np.clip(self.data.ctrl, lo, hi, out=self.data.ctrl)

    def targets(self) -> np.ndarray:
        return np.concatenate([self.data.ctrl[self._arm_act], self.data.ctrl[self._finger_act[:1]]])

    def step(self, n: int = 1) -> None:
        self._mj.mj_step(self.model, self.data, nstep=int(n))

    def positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr].copy()

    def velocities(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr].copy()

    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.ee_site].copy()

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.body(name).xquat.copy()

    def set_free_body(self, joint: str, pos: Sequence[float], quat: Sequence[float] = (1, 0, 0, 0)) -> None:
        """Place a free-jointed object (by its joint name) at rest."""
        j = self.model.joint(joint)
        a, v = j.qposadr[0], j.dofadr[0]
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = quat
        self.data.qvel[v:v + 6] = 0.0

    def set_mocap(self, body: str, pos: Sequence[float]) -> None:
        mocap_id = self.model.body(body).mocapid[0]
        if mocap_id < 0:
            raise SimError(f"body '{body}' is not a mocap body")
        self.data.mocap_pos[mocap_id] = pos

    def forward(self) -> None:
        self._mj.mj_forward(self.model, self.data)

    # --- camera --------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """RGB (H, W, 3) uint8 from the fixed front camera. Needs a GL backend (EGL/OSMesa)."""
        if self._renderer is None:
            h, w = self.image_size
            try:
                self._renderer = self._mj.Renderer(self.model, height=h, width=w)
            except Exception as err:  # noqa: BLE001 - GL init errors come in several types
                raise SimError(
                    f"cannot create an offscreen renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): "
                    f"{err}. Set MUJOCO_GL=egl (GPU/mesa EGL) or MUJOCO_GL=osmesa (software), or run "
                    f"without the camera") from err
        self._renderer.update_scene(self.data, camera=self._camera)
        try:
            return self._renderer.render()
        finally:
            _release_gl_context()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

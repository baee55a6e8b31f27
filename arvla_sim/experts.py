"""Scripted experts: Cartesian waypoint plans turned into joint-position targets by DLS IK.

ROS-free. Each expert reads the privileged ground truth in the observation (object and goal
poses), keeps a commanded end-effector pose that moves toward the current waypoint at a bounded
speed, and converts it to 7 arm joint targets with damped least squares on MuJoCo's site
Jacobian (its own MjData, so planning never disturbs the simulation), seeded from the previous
command for continuity. Output: 8 absolute joint targets (``JOINT_NAMES`` order) per control
step -- exactly the action a learned policy is trained to produce.

The commanded pose moves like a planned robot motion (see ``WaypointExpert``): along a
minimum-jerk (quintic) profile per waypoint (``motion_profile: min_jerk``), the same re-planned
from where the command is at every step (``min_jerk_replan``: a feedback law of the distance left,
not a function of the time since the waypoint began), or accelerating and braking at a bounded
rate (``trapezoid``: continuous velocity, steps in acceleration).
The memory-task expert touches the cued pad while the cue is in view, returns to its start
position, waits out the task's hold there commanding the held posture, and only then plans the
second leg from it -- nothing of leg 1 survives in its state, only in its history.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from arvla_sim.motion import (PEAK_ACCEL_FACTOR, PEAK_SPEED_FACTOR, min_jerk_fraction, quintic,
                              quintic_at)
from arvla_sim.robot import GRIPPER_CLOSED, GRIPPER_OPEN, HOME_Q

if TYPE_CHECKING:
    from arvla_sim.env import SimEnv
    from arvla_sim.robot import PandaWorld


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * (K @ K)


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix with angle < pi (the inverse of ``_rotation``)."""
    angle = float(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)))
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    if angle < 1e-12:
        return 0.5 * axis
    return axis * (angle / (2.0 * np.sin(angle)))


def _yaw_of_quat(q: np.ndarray) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


MOTION_PROFILES = ("trapezoid", "min_jerk", "min_jerk_replan")


def _column_cross_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_i a[:, i] x b[:, i] (the orientation error of two rotation matrices, doubled): the
    same products and order as ``np.cross`` per column, without its per-call overhead."""
    c = a[[1, 2, 0]] * b[[2, 0, 1]] - a[[2, 0, 1]] * b[[1, 2, 0]]
    return c[:, 0] + c[:, 1] + c[:, 2]


class DlsIK:
    """Position + orientation IK for the 7 arm joints by damped least squares.

    A null-space term pulls toward the home posture so the redundant 7th DoF does not drift
    over a long episode.
    """

    def __init__(self, world: "PandaWorld", *, damping: float = 0.05, posture_gain: float = 0.05):
        import mujoco

        self._mj = mujoco
        self.model = world.model
        self.data = mujoco.MjData(world.model)
        self.site = world.ee_site
        self.qadr = world.qpos_adr[:7]
        self.dadr = world.dof_adr[:7]
        self.lower, self.upper = world.lower[:7], world.upper[:7]
        self.damping = damping
        self.posture_gain = posture_gain
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))
        # "Gripper pointing straight down, yaw 0" = the home orientation squared up exactly.
        _, rot = self.fk(HOME_Q[:7])
        x = rot[:, 0] * np.array([1.0, 1.0, 0.0])
        x /= np.linalg.norm(x)
        z = np.array([0.0, 0.0, -1.0])
        self.down = np.column_stack([x, np.cross(z, x), z])

    def fk(self, q7: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qadr] = q7
        self._mj.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, q_seed: np.ndarray, pos: np.ndarray, rot: np.ndarray, *, iters: int = 20,
              max_dq: float = 0.2) -> np.ndarray:
        q = np.array(q_seed, dtype=np.float64)
        lam2 = self.damping ** 2
        for _ in range(iters):
            p, r = self.fk(q)
            err_p = pos - p
            err_r = 0.5 * _column_cross_sum(r, rot)
            err = np.concatenate([err_p, err_r])
            if np.linalg.norm(err_p) < 1e-4 and np.linalg.norm(err_r) < 1e-3:
                break
            self._mj.mj_comPos(self.model, self.data)
            self._mj.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dadr], self._jacr[:, self.dadr]])  # (6, 7)
            jjt = jac @ jac.T + lam2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (self.posture_gain * (HOME_Q[:7] - q))
            scale = np.max(np.abs(dq)) / max_dq
            if scale > 1.0:
                dq /= scale
            q = np.clip(q + dq, self.lower, self.upper)
        return q


@dataclasses.dataclass
class Waypoint:
    pos: np.ndarray            # end-effector site target (m, world)
    gripper: float             # finger opening target (m)
    speed: float = 0.25        # m/s of the commanded pose toward pos
    settle_s: float = 0.2      # wait after the command arrived before the next waypoint


class WaypointExpert:
    """Base class: follow a list of waypoints from ``plan(obs)``; subclasses make the plan.

    The commanded pose moves like a robot's planned motion, not a step input, stopping exactly
    on each waypoint; the fingers move at ``grip_speed``. ``motion_profile``:

    * ``"trapezoid"``: the hand's speed ramps up and down at ``max_accel``: continuous
      velocity, but acceleration steps at every corner of the profile. ``max_accel = None``:
      constant speed (velocity jumps at every waypoint: ~2x the RMS jerk).
    * ``"min_jerk"``: each waypoint is reached along a quintic from the current position,
      velocity and acceleration (minimum jerk from rest), in ``min_jerk_stretch`` times the
      time the segment's speed needs (peak speed ``1.875 / min_jerk_stretch`` times it) and no
      faster than ``max_accel`` allows: continuous acceleration, ~20 % longer episodes.
    * ``"min_jerk_replan"``: at every step, the quintic from the commanded position, velocity
      and acceleration to the waypoint in the time ``min_jerk`` would give the distance *left*;
      one step of it is taken. As smooth as ``min_jerk`` (executed joint RMS jerk 10 / 14 / 13
      against 12 / 17 / 21 on pick_lift / push / cued_reach), episodes 6-13 % longer, but the
      speed is a function of the distance left and the motion so far, never of the time since
      the waypoint began or the distance it started from: how fast to go is read from where the
      hand and the target are now (a learner with a noisy idea of when a segment began
      overshoots a time-parametrised profile; see README "Ablations").

    With either, the hand's yaw turns along a quintic peaking at ``peak_yaw_rate`` -- within
    what the wrist actuator follows: at a constant 2 rad/s it saturated, lagged, then stopped
    hard, which was 34 of the trapezoid demonstrator's RMS jerk of 40 on pick_lift -- and the
    measured orientation the pose was synchronised to fades into "pointing down" (see
    ``_orientation``) instead of being corrected in one step. The joints' jerk stays bounded:
    the demonstrations a policy learns its smoothness from.
    """

    max_accel: float | None = 1.5    # m/s^2 of the commanded end-effector position
    grip_speed: float = 0.15         # m/s of the commanded finger opening
    min_jerk_stretch: float = 1.5    # min_jerk: segment time / (distance / speed)
    arrive_tol: float = 5e-4         # min_jerk_replan: m from the waypoint and ...
    arrive_speed: float = 5e-3       # ... m/s at most to count as arrived
    orientation_fade_s: float = 1.0  # see _orientation
    peak_yaw_rate: float = 0.8       # rad/s at the middle of a turn (the sim's wrist actuator,
    #                                  12 Nm against damping 10, saturates near 1.2 rad/s)

    def __init__(self, env: "SimEnv", motion_profile: str = "trapezoid", grasp_retries: int = 0,
                 speed_jitter: float = 0.0):
        """``speed_jitter`` j (``min_jerk`` only): every waypoint's speed is scaled by a factor
        drawn log-uniformly in [1/(1+j), 1+j] (seeded by the episode's seed), so how long a move
        takes no longer follows from its length: a learner that times a move from its start
        (its memory) cannot tell where it ends, only where the target is can. 0: as before."""
        if motion_profile not in MOTION_PROFILES:
            raise ValueError(f"motion_profile must be one of {MOTION_PROFILES}, got {motion_profile!r}")
        if grasp_retries < 0:
            raise ValueError(f"grasp_retries must be >= 0, got {grasp_retries}")
        if not 0.0 <= speed_jitter <= 1.0:
            raise ValueError(f"speed_jitter must be in [0, 1], got {speed_jitter}")
        if speed_jitter > 0 and motion_profile != "min_jerk":
            raise ValueError(f"speed_jitter scales min_jerk's segment speeds; motion_profile is "
                             f"{motion_profile!r}")
        self.env = env
        self.ik = DlsIK(env.world)
        self.dt = env.dt
        self.motion_profile = motion_profile
        self.grasp_retries = grasp_retries   # tasks that grasp (pick_lift): tries after a miss
        self.speed_jitter = float(speed_jitter)

    def reset(self, obs: dict[str, Any]) -> None:
        self.sync_to_state(obs)
        self.grip = float(obs["state"][7])
        self.yaw = 0.0           # target yaw of the hand (plans set it)
        self.yaw_cmd = 0.0       # commanded yaw, turning toward it
        self.waypoints: list[Waypoint] = []
        self.settle = 0.0
        self.t = 0.0
        self.resyncs = 0
        # the speed factors of this episode's waypoints (speed_jitter): the same seed, the same draws
        self._speed_rng = np.random.default_rng([int(getattr(self.env, "seed", 0) or 0), 0x5EED])

    def _speed_factor(self) -> float:
        """The next waypoint's speed factor (1 without ``speed_jitter``; nothing drawn then)."""
        if self.speed_jitter <= 0:
            return 1.0
        span = float(np.log1p(self.speed_jitter))
        return float(np.exp(self._speed_rng.uniform(-span, span)))

    def sync_to_state(self, obs: dict[str, Any]) -> None:
        """Restart the commanded pose from the measured joints: arm joints, hand position, at rest."""
        self.q = obs["state"][:7].astype(np.float64).copy()
        self.pos, self._rot_measured = self.ik.fk(self.q)
        self.vel = np.zeros(3)
        self.acc = np.zeros(3)
        # the quintic of the waypoint in progress (min_jerk), of the turn in progress, and the
        # measured hand orientation's offset from "down at yaw_cmd" (rotation vector), faded out
        self._segment: tuple[Waypoint, np.ndarray, float, float] | None = None
        self._yaw_segment: tuple[float, np.ndarray, float, float] | None = None
        self._rot_offset: np.ndarray | None = None
        self._rot_age = 0.0

    def plan(self, obs: dict[str, Any]) -> list[Waypoint]:
        raise NotImplementedError

    def revise(self, obs: dict[str, Any]) -> None:
        """Every step before moving: a chance to change ``waypoints`` from what the robot's
        state shows (default: keep the plan)."""

    def _move(self, wp: Waypoint) -> bool:
        """Advance the commanded position one step toward ``wp``; True once it is there."""
        delta = wp.pos - self.pos
        dist = float(np.linalg.norm(delta))
        if self.max_accel is None:
            step = wp.speed * self.dt
            self.pos = wp.pos.copy() if dist <= step else self.pos + delta * (step / dist)
            return dist <= step
        if self.motion_profile == "min_jerk":
            return self._move_min_jerk(wp, dist)
        if self.motion_profile == "min_jerk_replan":
            return self._move_min_jerk_replan(wp, dist)
        if dist < 1e-6:
            self.pos, self.vel = wp.pos.copy(), np.zeros(3)
            return True
        # the speed that still stops on the waypoint, capped by the segment's speed
        want = delta / dist * min(wp.speed, float(np.sqrt(2.0 * self.max_accel * dist)))
        dv = want - self.vel
        limit = self.max_accel * self.dt
        n = float(np.linalg.norm(dv))
        self.vel = self.vel + (dv if n <= limit else dv * (limit / n))
        if float(np.linalg.norm(self.vel)) * self.dt >= dist:
            self.pos, self.vel = wp.pos.copy(), np.zeros(3)
            return True
        self.pos = self.pos + self.vel * self.dt
        return False

    def _move_min_jerk(self, wp: Waypoint, dist: float) -> bool:
        if self._segment is None or self._segment[0] is not wp:   # a new waypoint: plan its quintic
            if dist < 1e-6 and not self.vel.any():
                self.pos, self.acc = wp.pos.copy(), np.zeros(3)
                return True
            T = self._min_jerk_time(dist, wp.speed * self._speed_factor())
            self._segment = (wp, quintic(self.pos, self.vel, self.acc, wp.pos, T), T, 0.0)
        _, c, T, t = self._segment
        t = min(t + self.dt, T)
        self._segment = (wp, c, T, t)
        if t >= T:
            self.pos, self.vel, self.acc = wp.pos.copy(), np.zeros(3), np.zeros(3)
            return True
        self.pos, self.vel, self.acc = quintic_at(c, t)
        return False

    def _min_jerk_time(self, dist: float, speed: float) -> float:
        """Duration of a min_jerk move over ``dist``: ``min_jerk_stretch`` times what ``speed``
        needs, no less than ``max_accel`` allows, at least two steps."""
        return max(self.min_jerk_stretch * dist / speed,
                   float(np.sqrt(PEAK_ACCEL_FACTOR * dist / self.max_accel)), 2.0 * self.dt)

    def _move_min_jerk_replan(self, wp: Waypoint, dist: float) -> bool:
        if dist < self.arrive_tol and float(np.linalg.norm(self.vel)) < self.arrive_speed:
            self.pos, self.vel, self.acc = wp.pos.copy(), np.zeros(3), np.zeros(3)
            return True
        c = quintic(self.pos, self.vel, self.acc, wp.pos, self._min_jerk_time(dist, wp.speed))
        self.pos, self.vel, self.acc = quintic_at(c, self.dt)
        return False

    def _turn(self) -> None:
        """Advance the commanded yaw one step toward ``self.yaw``."""
        dyaw = (self.yaw - self.yaw_cmd + np.pi) % (2 * np.pi) - np.pi
        seg = self._yaw_segment
        if seg is None or seg[0] != self.yaw:          # a new target: a quintic from the current turn
            if abs(dyaw) < 1e-9 and seg is None:
                return
            v0, a0 = (np.zeros(1), np.zeros(1)) if seg is None else quintic_at(seg[1], seg[3])[1:]
            T = max(PEAK_SPEED_FACTOR * abs(dyaw) / self.peak_yaw_rate, 2.0 * self.dt)
            seg = (self.yaw, quintic(np.array([self.yaw_cmd]), v0, a0, np.array([self.yaw_cmd + dyaw]), T),
                   T, 0.0)
        target, c, T, t = seg
        t = min(t + self.dt, T)
        self.yaw_cmd = float(quintic_at(c, t)[0][0])
        self._yaw_segment = None if t >= T else (target, c, T, t)

    def _orientation(self) -> np.ndarray:
        """The commanded hand orientation: pointing down at ``yaw_cmd``. The measured
        orientation the pose was last synchronised to (off "down" by the start posture's
        noise) fades into it over ``orientation_fade_s`` along a quintic, rather than being
        corrected in the first step (a joint jump)."""
        want = _rot_z(self.yaw_cmd) @ self.ik.down
        if self._rot_offset is None:
            self._rot_offset = _rotvec(want.T @ self._rot_measured)
            self._rot_age = 0.0
        else:
            self._rot_age += self.dt
        keep = 1.0 - min_jerk_fraction(self._rot_age / self.orientation_fade_s)
        return want @ _rotation(keep * self._rot_offset)

    # DAgger labels (arvla_eval.dagger): the commanded pose is the expert's own, and on a robot a
    # policy took elsewhere it says where the PLAN is, not how to go on from where the arm is.
    # resync_m > 0: when the measured hand is further than this from where it would be following
    # the plan, the commanded position restarts there (the waypoint in progress re-planned from
    # it, the IK from the arm's joints). Following, the hand trails the command by ~ its
    # velocity x track_lead_s (the sim's JTC follower and PD: fit on clean min_jerk_replan
    # demonstrations, pick_lift and push, residual p50 0.4 cm, p95 1.1 cm), so at 2 cm a clean
    # min_jerk demonstration is re-planned 0-6 times, most not at all (test_dagger.py).
    resync_m: float = 0.0
    track_lead_s: float = 0.116
    resyncs: int = 0                 # re-anchorings since reset

    def _resync(self, obs: dict[str, Any]) -> None:
        q = np.asarray(obs["state"][:7], np.float64)
        hand, _ = self.ik.fk(q)
        expected = hand + self.track_lead_s * self.vel
        if float(np.linalg.norm(self.pos - expected)) > self.resync_m:
            self.pos = expected
            self.q = q.copy()        # the IK goes on from the arm's joints, not the plan's
            self._segment = None
            self.resyncs += 1

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Joint targets (8,) for this control step."""
        if obs["step"] == 0 or not hasattr(self, "q"):
            self.reset(obs)
        elif self.resync_m > 0:
            self._resync(obs)
        self.t = float(obs["time"])
        self.revise(obs)
        if not self.waypoints:
            self.waypoints = self.plan(obs)
        if self.waypoints:
            wp = self.waypoints[0]
            arrived = self._move(wp)
            dg = wp.gripper - self.grip
            self.grip += float(np.clip(dg, -self.grip_speed * self.dt, self.grip_speed * self.dt))
            if arrived:
                self.settle += self.dt
                if self.settle >= wp.settle_s:
                    self.waypoints.pop(0)
                    self.settle = 0.0
        self._turn()
        self.q = self.ik.solve(self.q, self.pos, self._orientation())
        return np.concatenate([self.q, [self.grip]])


class PickLiftExpert(WaypointExpert):
    """Above the cube, down, close, lift. With ``grasp_retries`` > 0 a missed grasp is tried
    again: when the fingers close on nothing during the lift (the cube holds them at its half
    width, 0.02 m), the hand opens while rising ``retry_rise`` and the plan starts over from
    the cube's pose now -- demonstrations of a recovery that a policy can only learn from its
    own state (the finger opening), as it would have to on a robot."""

    grasp_offset = 0.035    # site height above the cube centre at grasp (finger pads on the cube)
    missed_grasp = 0.008    # m per finger: closed below this while lifting = nothing held
    retry_rise = 0.05       # m the hand rises while it opens after a miss

    def _grasp(self, obs: dict[str, Any]) -> list[Waypoint]:
        p = obs["privileged"]["object_pos"]
        yaw = _yaw_of_quat(obs["privileged"]["object_quat"])
        self.yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4   # cube is 90-degree symmetric
        above = p + np.array([0.0, 0.0, 0.12])
        grasp = p + np.array([0.0, 0.0, self.grasp_offset])
        self._lift = Waypoint(p + np.array([0.0, 0.0, 0.25]), GRIPPER_CLOSED, speed=0.2, settle_s=10.0)
        return [Waypoint(above, GRIPPER_OPEN, speed=0.35, settle_s=0.1),
                Waypoint(grasp, GRIPPER_OPEN, speed=0.15, settle_s=0.15),
                Waypoint(grasp, GRIPPER_CLOSED, settle_s=0.6),
                self._lift]

    def plan(self, obs):
        if getattr(self, "_done", False) and self.t > 0:
            return []
        self._done = True
        return self._grasp(obs)

    def revise(self, obs):
        if (self.retries_left > 0 and self.waypoints and self.waypoints[0] is self._lift
                and float(obs["state"][7]) < self.missed_grasp):
            self.retries_left -= 1
            rise = Waypoint(self.pos + np.array([0.0, 0.0, self.retry_rise]), GRIPPER_OPEN,
                            speed=0.15, settle_s=0.1)
            self.waypoints = [rise] + self._grasp(obs)
            self.settle = 0.0

    def reset(self, obs):
        super().reset(obs)
        self._done = False
        self._lift: Waypoint | None = None
        self.retries_left = self.grasp_retries


class PushExpert(WaypointExpert):
    """Closed loop: re-plans an approach behind the block whenever it drifts off the push line."""

    push_height = 0.065     # site height while pushing (fingertips ~1.5 cm above the table)
    push_stretch = 0.03     # m pushed between re-plans (each stretch ends at rest)
    approach_gap = 0.03     # m between the block's face and the hand's descent point behind it
    # m/s of a push stretch: a min_jerk stretch takes 1.5x the time at the same speed (at 0.08
    # m/s 4/20 clean demonstrations ran out of time), so it pushes faster on average
    push_speed = {"trapezoid": 0.08, "min_jerk": 0.11, "min_jerk_replan": 0.11}

    def reset(self, obs):
        super().reset(obs)
        self.pushing = False

    def plan(self, obs):
        pr = obs["privileged"]
        b, g, half = pr["object_pos"][:2], pr["target_pos"][:2], float(pr["object_half"][0])
        to_goal = g - b
        dist = float(np.linalg.norm(to_goal))
        if dist < 0.02:
            return [Waypoint(self.pos.copy(), GRIPPER_CLOSED, settle_s=0.5)]
        u = to_goal / dist
        behind = b - u * (half + self.approach_gap)
        pusher = self.pos[:2]
        rel = b - pusher
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        aligned = self.pushing and lateral < 0.012 and float(rel @ u) > 0
        if aligned:
            # Push a short stretch along the current block->goal line, then re-plan.
            nxt = pusher + u * min(self.push_stretch, dist)
            return [Waypoint(np.array([nxt[0], nxt[1], self.push_height]), GRIPPER_CLOSED,
                             speed=self.push_speed[self.motion_profile], settle_s=0.0)]
        self.pushing = True
        self.yaw = float(np.arctan2(u[1], u[0]))
        self.yaw = (self.yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        lift = max(self.pos[2], 0.14)
        return [Waypoint(np.array([self.pos[0], self.pos[1], lift]), GRIPPER_CLOSED, speed=0.3, settle_s=0.0),
                Waypoint(np.array([behind[0], behind[1], lift]), GRIPPER_CLOSED, speed=0.35, settle_s=0.0),
                Waypoint(np.array([behind[0], behind[1], self.push_height]), GRIPPER_CLOSED,
                         speed=0.2, settle_s=0.1)]


class CuedReachExpert(WaypointExpert):
    """Leg 1 to the cued pad (from the first step, while the cue is in view), back to the start
    position, wait out the task's hold, leg 2 to the other pad."""

    hover = 0.15
    touch = 0.055           # 3 cm below CuedReach.touch_height: DART noise lifts the hand ~2 cm
    dwell_s = 0.3           # on the first pad (a touch under DART noise needs a moment)

    def reset(self, obs):
        super().reset(obs)
        self._leg = 0

    def _above(self, pad: np.ndarray) -> np.ndarray:
        return np.array([pad[0], pad[1], self.hover])

    def _touch(self, pad: np.ndarray, settle_s: float) -> list[Waypoint]:
        return [Waypoint(self._above(pad), GRIPPER_OPEN, speed=0.4, settle_s=0.0),
                Waypoint(np.array([pad[0], pad[1], self.touch]), GRIPPER_OPEN, speed=0.25,
                         settle_s=settle_s)]

    def second_leg(self, obs: dict[str, Any], pad: np.ndarray) -> list[Waypoint]:
        """Leg 2 to ``pad``, planned from the measured (held) posture, not from the posture this
        expert's IK happened to reach at home (that depends on leg 1)."""
        self.sync_to_state(obs)
        self._leg = 2
        return self._touch(pad, 10.0)

    def plan(self, obs):
        pr = obs["privileged"]
        if self._leg == 0:
            self._leg = 1
            goal = pr["goal_pos"]
            return self._touch(goal, self.dwell_s) + [
                Waypoint(self._above(goal), GRIPPER_OPEN, speed=0.4, settle_s=0.0),
                Waypoint(pr["home_pos"].copy(), GRIPPER_OPEN, speed=0.4, settle_s=0.0)]
        if self._leg == 1:
            if self.t < float(pr["release_at_s"][0]):   # home: wait out the hold, commanding
                self.sync_to_state(obs)                   # the posture the arm is held in, so
                return [Waypoint(self.pos.copy(), self.grip, settle_s=0.0)]   # the release is no jump
            return self.second_leg(obs, pr["other_pos"])
        return []


class DartNoise:
    """Perturbations for DART-style demonstrations (Laskey et al., 2017): the robot executes
    ``expert action + noise`` while the dataset keeps the clean expert action, so the learner
    also sees states off the expert's path together with the action that leads back to it.

    Noise: an Ornstein-Uhlenbeck process on the 7 arm joints (smooth, like a policy's drift;
    stationary std ``std`` rad, correlation time ``tau_s``); the gripper is never perturbed.
    ``std = 0`` gives exactly zero.
    """

    SEED_OFFSET = 7919   # the noise stream of episode ``seed`` is not the episode's own stream

    def __init__(self, std: float, *, tau_s: float = 0.5, dt: float = 0.05, seed: int = 0):
        if std < 0 or tau_s <= 0 or dt <= 0:
            raise ValueError(f"DartNoise: need std >= 0, tau_s > 0, dt > 0; got {std}, {tau_s}, {dt}")
        self.std, self.dt, self.a = float(std), float(dt), float(np.exp(-dt / tau_s))
        self.rng = np.random.default_rng(seed)
        self.x = np.zeros(7)

    def reset(self, episode_seed: int) -> None:
        """Start the noise of the episode with seed ``episode_seed`` (same seed, same noise)."""
        self.rng = np.random.default_rng(episode_seed + self.SEED_OFFSET)
        self.x = self.rng.normal(0.0, self.std, 7) if self.std > 0 else np.zeros(7)

    def perturb(self, action: np.ndarray) -> np.ndarray:
        """``action`` (8,) + the next noise sample on the arm joints (a new array)."""
        if self.std > 0:
            self.x = self.a * self.x + np.sqrt(1 - self.a ** 2) * self.rng.normal(0.0, self.std, 7)
        out = np.array(action, dtype=np.float64, copy=True)
        out[:7] += self.x
        return out


EXPERTS: dict[str, type[WaypointExpert]] = {
    "pick_lift": PickLiftExpert, "push": PushExpert, "cued_reach": CuedReachExpert}


def make_expert(env: "SimEnv", motion_profile: str = "trapezoid", grasp_retries: int = 0,
                speed_jitter: float = 0.0) -> WaypointExpert:
    """The scripted expert for ``env``'s task, moving with ``motion_profile`` (MOTION_PROFILES);
    ``grasp_retries``: how often a task that grasps tries again after a missed grasp;
    ``speed_jitter``: see ``WaypointExpert``."""
    return EXPERTS[env.task.name](env, motion_profile, grasp_retries, speed_jitter)

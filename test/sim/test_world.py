"""The MuJoCo scene, SimEnv, the tasks' cue, the scripted experts and the episode collector."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from arvla_base.config import ConfigError
from arvla_sim.collect import collect_episode, load_episode, save_episode
from arvla_sim.env import SimEnv, SimEnvConfig
from arvla_sim.experts import make_expert
from arvla_sim.robot import HOME_Q, JOINT_NAMES, PandaWorld, SimError


def test_scene_loads_steps_and_tracks_a_joint_target():
    w = PandaWorld()
    w.reset(HOME_Q)
    target = HOME_Q.copy()
    target[0] += 0.3
    target[3] += 0.2
    w.set_targets(target)
    w.step(1000)      # 2 s at 500 Hz
    assert w.time == pytest.approx(2.0)
    np.testing.assert_allclose(w.positions(), target, atol=0.01)
    np.testing.assert_allclose(w.velocities(), 0.0, atol=0.02)
    with pytest.raises(SimError, match="expected 8 joint values"):
        w.set_targets(target[:7])
    with pytest.raises(SimError, match="finite"):
        w.set_targets(np.full(8, np.nan))


def test_render_shows_the_scene():
    env = SimEnv(task="pick_lift")
    env.reset(0)
    img = env.render()
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 10, "the red cube should be visible from the camera"
    grey = (img.min(axis=-1) > 150) & (np.ptp(img, axis=-1) < 30)   # light, unsaturated: the arm
    assert grey.sum() > 1000, "the (white) arm should be visible from the camera"


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="task"):
        SimEnvConfig(task="juggle")
    with pytest.raises(ConfigError, match="control_rate_hz"):
        SimEnvConfig(control_rate_hz=30.0)   # 500 Hz / 30 is not an integer


def test_reset_is_deterministic_per_seed():
    env = SimEnv(task="push")
    a = env.reset(3)
    b = env.reset(3)
    c = env.reset(4)
    np.testing.assert_array_equal(a["state"], b["state"])
    np.testing.assert_array_equal(a["privileged"]["object_pos"], b["privileged"]["object_pos"])
    assert not np.allclose(a["privileged"]["object_pos"], c["privileged"]["object_pos"])


@pytest.mark.parametrize("profile", ["trapezoid", "min_jerk", "min_jerk_replan"])
@pytest.mark.parametrize("task, seeds, min_rate", [
    ("pick_lift", range(8), 0.85), ("push", range(8), 0.85), ("cued_reach", range(10), 1.0)])
def test_scripted_expert_solves_its_task(task, seeds, min_rate, profile):
    env = SimEnv(task=task, image_height=32, image_width=32)
    expert = make_expert(env, profile)
    wins = 0
    for seed in seeds:
        obs = env.reset(seed)
        while not env.done():
            obs = env.step(expert.act(obs))
        wins += env.success()
    rate = wins / len(seeds)
    print(f"{task}: expert success {wins}/{len(seeds)} = {rate:.0%}")
    assert rate >= min_rate


def _green(img: np.ndarray) -> np.ndarray:
    return (img[..., 1] > 150) & (img[..., 0] < 90) & (img[..., 2] < 110)


def test_memory_cue_visible_early_then_hidden_and_on_the_goal_side():
    env = SimEnv(task="cued_reach")
    sides = set()
    for seed in range(6):
        obs = env.reset(seed)
        early = _green(env.render())
        assert early.sum() > 15, f"seed {seed}: cue should be visible at t=0"
        # Goal at +y appears on the RIGHT half of the image (camera looks back at the robot).
        cols = np.nonzero(early)[1]
        goal_y = obs["privileged"]["goal_pos"][1]
        assert (cols.mean() > 112) == (goal_y > 0), f"seed {seed}: cue on the wrong side"
        sides.add(goal_y > 0)
        hold = obs["state"].copy()
        for _ in range(int(1.5 * env.config.control_rate_hz)):
            env.step(hold)
        assert _green(env.render()).sum() == 0, f"seed {seed}: cue still visible after 1.5 s"
    assert sides == {True, False}, "both goals should occur over the seeds"


def _run_until_release(env, expert, seed, *, flip=False):
    """The expert through leg 1 and the hold; returns the observation at release and the
    states of leg 1."""
    obs = env.reset(seed)
    if flip:
        env.task.set_goal(env.world, 1 - env.task.goal)
        obs = env.observe()
    states = []
    while env.world.time < env.task.release_at_s - 1e-9:
        assert not env.done(), f"seed {seed}: episode ended before the hold"
        obs = env.step(expert.act(obs))
        states.append(obs["state"])
    return obs, np.asarray(states)


def test_memory_task_after_the_hold_nothing_observable_depends_on_the_goal():
    """Same seed, goal flipped: leg 1 goes to opposite pads, but when the hold at home ends the
    joint states agree to 1e-5 rad and the images match, so only a memory of leg 1 can tell
    which pad is left (a memoryless policy is at chance)."""
    env = SimEnv(task="cued_reach")
    expert = make_expert(env)
    (obs_a, leg_a), (obs_b, leg_b) = (_run_until_release(env, expert, 7, flip=f) for f in (False, True))
    img_b = env.render().astype(int)
    _run_until_release(env, expert, 7)
    img_a = env.render().astype(int)
    assert obs_a["privileged"]["goal_index"][0] != obs_b["privileged"]["goal_index"][0]
    n = min(len(leg_a), len(leg_b))
    assert np.abs(leg_a[:n, 0] - leg_b[:n, 0]).max() > 0.3, "leg 1 must go to opposite sides"
    np.testing.assert_allclose(obs_a["state"], obs_b["state"], atol=1e-5)
    np.testing.assert_allclose(obs_a["velocity"], obs_b["velocity"], atol=1e-4)
    np.testing.assert_allclose(obs_a["state"][:7], env.start_q[:7], atol=1e-5)
    assert np.abs(img_a - img_b).mean() < 0.01


def test_memory_task_hold_outlasts_a_chunk_and_locks_the_arm_whatever_is_commanded():
    """No policy can carry the goal through the hold in its posture: from the moment the arm is
    home after leg 1 until the release, it stays at the start posture under any command (here:
    a push toward the pad still to touch), then follows."""
    env = SimEnv(task="cued_reach")
    # a 16-step chunk (0.8 s at 20 Hz) predicted before the hold, reaching the policy
    # ~0.1-0.3 s late, ends inside it: at least one chunk starts from the goal-free state
    assert env.task.hold_s >= 16 / 20.0 + 0.3
    expert = make_expert(env)
    obs = env.reset(3)
    while env.task.held_at is None:
        assert not env.done()
        obs = env.step(expert.act(obs))
    assert env.task.first == env.task.goal and env.task.arm_locked(env.world)
    side = 1.0 if obs["privileged"]["other_pos"][1] > 0 else -1.0
    push = np.concatenate([env.start_q[:7], [obs["state"][7]]]).astype(np.float32)
    push[0] += 0.3 * side                      # joint 1 swings the arm toward the other pad
    for _ in range(int((env.LOCK_GLIDE_S + 0.3) * env.config.control_rate_hz)):   # settle into the hold
        obs = env.step(push)
    while env.world.time < env.task.release_at_s - 1e-9:
        obs = env.step(push)
        assert np.abs(obs["state"][:7] - env.start_q[:7]).max() < 2e-2
    assert np.abs(obs["state"][:7] - env.start_q[:7]).max() < 2e-3
    for _ in range(10):
        obs = env.step(push)
    assert (obs["state"][0] - env.start_q[0]) * side > 0.1


def test_memory_task_lock_glides_the_targets_to_the_start_posture():
    """The lock engages like brakes: the joint targets leave the last command at the arm's
    velocity and reach the start posture along a quintic in LOCK_GLIDE_S, with no jump (a jump
    of 6 cm worth of targets read as a jerk spike of whichever policy came home); then hold."""
    env = SimEnv(task="cued_reach", image_height=32, image_width=32)
    expert = make_expert(env)
    obs = env.reset(3)
    while not env.task.arm_locked(env.world):
        obs = env.step(expert.act(obs))
    jump = np.abs(env.world.targets() - env.start_q).max()     # the last command's distance
    assert jump > 0.02, "the lock engaged away from the start posture: nothing to glide"
    targets = [env.world.targets()]
    while env.world.time < env.task.release_at_s - env.dt:
        env.command(np.zeros(8))                  # any command: ignored while locked
        env.step_physics(1)
        targets.append(env.world.targets())
    targets = np.asarray(targets)
    step = np.abs(np.diff(targets, axis=0)).max()
    assert step < 0.1 * jump, f"targets jump by {step:.4f} rad per physics step"
    np.testing.assert_allclose(targets[-1], env.start_q, atol=1e-9)
    assert np.abs(env.world.positions()[:7] - env.start_q[:7]).max() < 2e-3


def test_min_jerk_demonstrator_commands_the_held_posture_so_the_release_is_smooth():
    """During the hold the demonstrator commands the posture the arm is held in, so the
    release does not jump the targets; its leg 2 then starts from rest."""
    env = SimEnv(task="cued_reach", image_height=32, image_width=32)
    expert = make_expert(env, "min_jerk")
    obs = env.reset(5)
    while env.world.time < env.task.release_at_s - 1e-9:
        assert not env.done()
        cmd = expert.act(obs)
        obs = env.step(cmd)
    # the command the sim takes over at the release: the held posture (to IK accuracy)
    assert np.abs(cmd[:7] - obs["state"][:7]).max() < 5e-3, np.abs(cmd[:7] - obs["state"][:7])


def test_quintic_segments_meet_their_boundary_conditions():
    from arvla_sim.motion import PEAK_ACCEL_FACTOR, PEAK_SPEED_FACTOR, quintic, quintic_at

    p0, v0, a0, p1, T = np.array([0.1, -0.2]), np.array([0.5, 0.0]), np.array([-1.0, 2.0]), np.array([0.3, 0.4]), 0.8
    c = quintic(p0, v0, a0, p1, T)
    for got, want in zip(quintic_at(c, 0.0), (p0, v0, a0)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    for got, want in zip(quintic_at(c, T), (p1, 0 * p1, 0 * p1)):
        np.testing.assert_allclose(got, want, atol=1e-9)
    # rest to rest: the minimum-jerk move's peak speed and acceleration
    c = quintic(np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1), 2.0)
    t = np.linspace(0, 2.0, 20001)
    v = np.array([quintic_at(c, x)[1][0] for x in t])
    a = np.array([quintic_at(c, x)[2][0] for x in t])
    assert v.max() == pytest.approx(PEAK_SPEED_FACTOR / 2.0, rel=1e-6)
    assert np.abs(a).max() == pytest.approx(PEAK_ACCEL_FACTOR / 4.0, rel=1e-4)
    with pytest.raises(ValueError, match="duration"):
        quintic(p0, v0, a0, p1, 0.0)
    # the normalised fraction is that move's position (clipped outside [0, 1])
    from arvla_sim.motion import min_jerk_fraction

    for x in (0.0, 0.3, 1.1, 1.7, 2.0):
        assert min_jerk_fraction(x / 2.0) == pytest.approx(quintic_at(c, x)[0][0], abs=1e-12)
    assert min_jerk_fraction(-0.5) == 0.0 and min_jerk_fraction(3.0) == 1.0


def test_memory_task_demonstrator_succeeds_under_dart_noise():
    """Half the demo's demonstrations run with 0.02 rad DART noise on the executed commands: the
    touches and the return home must still register (a 3 cm home radius lost 1 in 3)."""
    env = SimEnv(task="cued_reach", image_height=32, image_width=32)
    wins = sum(collect_episode(env, seed=s, render=False, noise_std=0.02)["success"]
               for s in range(1, 24, 2))
    assert wins >= 11, f"{wins}/12 noisy demonstrations succeeded"


def test_memory_task_judges_the_order_of_touches():
    """Wrong first pad fails at once; the cued pad again after the hold fails; touches on the
    way back do not count."""
    env = SimEnv(task="cued_reach")
    expert = make_expert(env)
    obs, _ = _run_until_release(env, expert, 5)
    assert not env.done() and env.task.second is None
    # drive leg 2 to the CUED pad with the expert's own IK: a failure, not a success
    expert.waypoints = expert.second_leg(obs, obs["privileged"]["goal_pos"])
    while not env.done():
        obs = env.step(expert.act(obs))
    assert env.failure() and not env.success() and env.task.second == env.task.goal
    # first touch on the other pad: failure at once
    obs = env.reset(5)
    obs = env.step(obs["state"])          # past step 0, where act() would re-plan leg 1
    expert.reset(obs)
    expert.waypoints = expert.second_leg(obs, obs["privileged"]["other_pos"])
    while not env.done():
        obs = env.step(expert.act(obs))
    assert env.failure() and env.task.first == 1 - env.task.goal and env.task.held_at is None


def test_collect_episode_format_and_roundtrip(tmp_path):
    env = SimEnv(task="cued_reach")
    ep = collect_episode(env, seed=2, frame_every=4)
    T = len(ep["states"])
    assert ep["success"] and T > 20
    assert ep["states"].shape == (T, 8) and ep["actions"].shape == (T, 8)
    assert ep["states"].dtype == np.float32 and ep["actions"].dtype == np.float32
    np.testing.assert_array_equal(ep["frame_steps"], np.arange(0, T, 4))
    assert ep["images"].shape == (len(ep["frame_steps"]), 224, 224, 3)
    assert ep["joint_names"] == list(JOINT_NAMES)
    back = load_episode(save_episode(ep, tmp_path / "ep.npz"))
    for key in ("states", "actions", "images", "frame_steps"):
        np.testing.assert_array_equal(back[key], ep[key])
    for key in ("control_rate_hz", "model_id", "joint_names", "task", "instruction", "seed", "success"):
        assert back[key] == ep[key]


def test_save_episode_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """The write goes through a hidden ``.<name>.tmp`` that is fsynced before the rename: a
    write that fails before the rename keeps the previous episode and leaves no temp file."""
    import os

    import arvla_sim.collect as collect

    first = {"states": np.zeros((3, 2), np.float32), "task": "a"}
    path = save_episode(first, tmp_path / "ep.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.npz"]
    synced = []
    real_fsync = os.fsync

    def fsync_then_fail(fd):
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        raise OSError("disk full")

    monkeypatch.setattr(collect.os, "fsync", fsync_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_episode({"states": np.ones((3, 2), np.float32), "task": "b"}, path)
    assert [os.path.basename(s) for s in synced] == [".ep.npz.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["states"], first["states"])


def test_dart_demonstrations_keep_clean_labels_off_the_clean_path():
    """DART: the robot executes perturbed commands (so the states leave the clean path) while
    the recorded actions stay the expert's own; noise_std 0 is exactly the clean episode."""
    from arvla_sim.experts import DartNoise

    env = SimEnv(task="cued_reach", image_height=64, image_width=64)
    clean = collect_episode(env, seed=3, render=False)
    again = collect_episode(env, seed=3, render=False, noise_std=0.0)
    np.testing.assert_array_equal(clean["states"], again["states"])
    noisy = collect_episode(env, seed=3, render=False, noise_std=0.03)
    T = min(len(clean["states"]), len(noisy["states"]))
    drift = np.abs(noisy["states"][:T, :7] - clean["states"][:T, :7]).max()
    assert 0.01 < drift < 0.3
    # the label at each step is the expert's clean target, not the executed (perturbed) one:
    # far from the measured state by the noise, and the gripper is never perturbed
    gap = np.abs(noisy["actions"][1:T, :7] - noisy["states"][1:T, :7]).mean()
    assert gap > np.abs(clean["actions"][1:T, :7] - clean["states"][1:T, :7]).mean()
    d = DartNoise(0.02, dt=0.05, seed=0)
    d.reset(1)
    xs = np.array([d.perturb(np.zeros(8)) for _ in range(4000)])
    assert (xs[:, 7] == 0).all() and 0.015 < xs[:, :7].std() < 0.025
    assert np.corrcoef(xs[:-1, 0], xs[1:, 0])[0, 1] > 0.8        # smooth, not white noise


def test_demonstrator_motion_has_bounded_acceleration_and_less_jerk():
    """The commanded hand position ramps its speed at max_accel (no velocity jumps at the
    waypoints), the fingers move at grip_speed, the wrist turns no faster than peak_yaw_rate;
    the clean demonstration's joint jerk drops against the constant-speed profile."""
    from arvla_eval import metrics
    from arvla_sim.experts import WaypointExpert

    env = SimEnv(task="pick_lift", image_height=32, image_width=32)
    expert = make_expert(env)
    jerk = {}
    for accel in (None, WaypointExpert.max_accel):
        expert.max_accel = accel
        obs = env.reset(4)
        pos, grip, yaw, states = [], [], [], [obs["state"]]
        while not env.done():
            obs = env.step(expert.act(obs))
            pos.append(expert.pos.copy())
            grip.append(expert.grip)
            yaw.append(expert.yaw_cmd)
            states.append(obs["state"])
        assert env.success()
        jerk[accel] = metrics.rms_jerk(np.asarray(states, np.float64), env.dt)
        assert np.abs(np.diff(yaw)).max() / env.dt <= expert.peak_yaw_rate * 1.01
        if accel is not None:
            dv = np.linalg.norm(np.diff(np.asarray(pos), n=2, axis=0), axis=1) / env.dt
            assert dv.max() <= 2.5 * accel * env.dt, f"velocity jump {dv.max():.3f} m/s"
            assert np.abs(np.diff(grip)).max() <= expert.grip_speed * env.dt + 1e-9
    assert jerk[WaypointExpert.max_accel] < 0.9 * jerk[None], jerk


def test_min_jerk_demonstrator_is_smooth_and_smoother_than_the_trapezoid():
    """min_jerk: the commanded hand position has continuous acceleration (no steps at the
    corners of a trapezoid), the wrist turns no faster than peak_yaw_rate, and the robot's
    executed joint jerk (through the controller follower, as in collection) drops well below
    the trapezoid profile's (12 against 21 on 20 seeds)."""
    task = "pick_lift"
    from arvla_eval import metrics
    from arvla_sim.collect import ThroughController, collect_episode

    env = SimEnv(task=task, image_height=32, image_width=32)
    jerk = {}
    for profile in ("trapezoid", "min_jerk"):
        expert = make_expert(env, profile)
        runs = []
        for seed in (100000, 100001, 100002):
            tc = ThroughController(env)
            ep = collect_episode(env, seed, render=False, execute=tc, expert=expert)
            assert ep["success"], (profile, seed)
            runs.append(metrics.rms_jerk_stamped(np.asarray(tc.joint_ns) * 1e-9,
                                                 np.asarray(tc.joint_positions), env.dt))
        jerk[profile] = float(np.mean(runs))
        if profile == "min_jerk":    # the commanded pose of the last episode, replayed
            obs = env.reset(100002)
            expert.reset(obs)
            pos, yaw = [], []
            while not env.done():
                obs = env.step(expert.act(obs))
                pos.append(expert.pos.copy())
                yaw.append(expert.yaw_cmd)
            acc = np.diff(np.asarray(pos), n=2, axis=0) / env.dt**2
            assert np.linalg.norm(np.diff(acc, axis=0), axis=1).max() / env.dt < 60.0   # m/s^3
            assert np.abs(np.diff(yaw)).max() / env.dt <= expert.peak_yaw_rate * 1.01
    print(task, jerk)
    assert jerk["min_jerk"] < 0.75 * jerk["trapezoid"], jerk


def test_min_jerk_replan_is_a_feedback_law_of_the_distance_left():
    """min_jerk_replan: the next command depends only on where the command is (position,
    velocity, acceleration) and the waypoint -- a demonstrator that takes over mid-move commands
    exactly what the one that began the move does. min_jerk's depends on when and from where the
    segment began. Both arrive exactly, with continuous acceleration."""
    from arvla_sim.experts import Waypoint
    from arvla_sim.robot import GRIPPER_OPEN

    env = SimEnv(task="pick_lift", image_height=32, image_width=32)
    obs = env.reset(0)
    for profile, same in (("min_jerk_replan", True), ("min_jerk", False)):
        first, other = make_expert(env, profile), make_expert(env, profile)
        first.reset(obs)
        other.reset(obs)
        start = first.pos.copy()
        goal = Waypoint(first.pos + np.array([0.25, -0.1, -0.05]), GRIPPER_OPEN, speed=0.35)
        for _ in range(6):
            first._move(goal)
        other.pos, other.vel, other.acc = first.pos.copy(), first.vel.copy(), first.acc.copy()
        first._move(goal)
        other._move(dataclasses.replace(goal))   # the same waypoint, taken over now
        assert np.allclose(first.pos, other.pos, rtol=0, atol=1e-12) == same, profile
        path = [first.pos.copy()]
        for _ in range(200):
            arrived = first._move(goal)
            path.append(first.pos.copy())
            if arrived:
                break
        assert arrived and np.array_equal(first.pos, goal.pos), profile
        acc = np.diff(np.asarray(path), n=2, axis=0) / env.dt**2
        assert np.linalg.norm(np.diff(acc, axis=0), axis=1).max() / env.dt < 60.0, profile   # m/s^3
        u = (goal.pos - start) / np.linalg.norm(goal.pos - start)
        assert ((np.asarray(path) - goal.pos) @ u).max() < 1e-3, profile   # never past the waypoint


def test_the_embedded_robot_limits_live_in_one_place(repo_root):
    """config/action_expert.yaml (defaults for the embedded Panda) and evaluation's expert
    parameters take the velocity limits of arvla_sim.robot.MAX_VELOCITY."""
    from arvla_base.config import load_yaml
    from arvla_eval.rollout import expert_parameters
    from arvla_sim.robot import JOINT_NAMES, MAX_VELOCITY

    params = load_yaml(repo_root / "config" / "action_expert.yaml")["arvla_action_expert"]["ros__parameters"]
    assert params["joints"] == list(JOINT_NAMES)
    assert params["max_velocity"] == list(MAX_VELOCITY)
    n = len(JOINT_NAMES)
    assert expert_parameters(JOINT_NAMES, [0.0] * n, [1.0] * n)["max_velocity"] == list(MAX_VELOCITY)


def test_pick_lift_demonstrator_tries_a_missed_grasp_again():
    """grasp_retries: with DART noise on the executed commands, seed 3's grasp closes on nothing
    (it fails without retries); with retries the demonstrator sees its empty fingers on the
    lift (its own state, nothing privileged), opens while rising, re-approaches the cube where
    it is now and succeeds. A grasp that holds the cube is never retried, and the episodes
    without a miss are the same with or without retries."""
    from arvla_sim.collect import ThroughController, collect_episode

    env = SimEnv(task="pick_lift", image_height=32, image_width=32)
    tc = ThroughController(env)
    out = {}
    for seed, noise in ((3, 0.02), (100000, 0.0)):
        for retries in (0, 2):
            expert = make_expert(env, "min_jerk", grasp_retries=retries)
            ep = collect_episode(env, seed, render=False, noise_std=noise, execute=tc, expert=expert)
            out[seed, retries] = (ep, retries - expert.retries_left)
    (miss, _), (retried, tries) = out[3, 0], out[3, 2]
    assert not miss["success"] and retried["success"] and tries == 1
    first = miss["states"].shape[0]   # identical up to the miss, then the retry diverges
    n = min(first, retried["states"].shape[0])
    diverge = int(np.argmax(np.any(miss["actions"][:n] != retried["actions"][:n], axis=1)))
    assert diverge > 40 and miss["states"][diverge, 7] < expert.missed_grasp
    (clean, _), (clean_r, tries_clean) = out[100000, 0], out[100000, 2]
    assert clean["success"] and tries_clean == 0
    np.testing.assert_array_equal(clean["actions"], clean_r["actions"])
    # a demonstrator that joins mid-episode (its first act at step > 0) resets itself first
    obs = env.reset(3)
    obs = env.step(obs["state"])
    late = make_expert(env, "min_jerk", grasp_retries=2)
    assert np.all(np.isfinite(late.act(obs))) and late.retries_left == 2
    with pytest.raises(ValueError, match="grasp_retries"):
        make_expert(env, "min_jerk", grasp_retries=-1)
    env.close()


def test_speed_jitter_scales_each_move_per_episode_seed():
    """speed_jitter (min_jerk): each waypoint's speed is scaled by a factor drawn in [1/(1+j),
    1+j] from the episode's seed, so a move of one length takes different times in different
    episodes; the same seed draws the same factors, and 0 draws nothing (the demonstrator as
    before, command for command)."""
    from arvla_sim.collect import collect_episode

    env = SimEnv(task="push", image_height=32, image_width=32)

    def run(jitter: float, seed: int) -> np.ndarray:
        ep = collect_episode(env, seed, render=False, expert=make_expert(env, "min_jerk",
                                                                         speed_jitter=jitter))
        return np.asarray(ep["actions"])

    plain = run(0.0, 100003)
    assert np.array_equal(plain, np.asarray(collect_episode(
        env, 100003, render=False, expert=make_expert(env, "min_jerk"))["actions"]))
    jittered = run(0.5, 100003)
    assert np.array_equal(jittered, run(0.5, 100003))            # seeded by the episode
    assert not np.array_equal(jittered[:40], plain[:40])          # the moves are timed otherwise
    expert = make_expert(env, "min_jerk", speed_jitter=0.5)
    expert.reset(env.reset(5))
    factors = [expert._speed_factor() for _ in range(200)]
    assert 1 / 1.5 - 1e-9 <= min(factors) and max(factors) <= 1.5 + 1e-9
    assert min(factors) < 0.8 and max(factors) > 1.3              # spread over the range
    expert.reset(env.reset(5))
    assert expert._speed_factor() == factors[0]                   # the same seed, the same draws
    with pytest.raises(ValueError, match="speed_jitter"):
        make_expert(env, "trapezoid", speed_jitter=0.5)
    with pytest.raises(ValueError, match="speed_jitter"):
        make_expert(env, "min_jerk", speed_jitter=1.5)

"""The MuJoCo scene, SimEnv, the tasks' cue, the scripted experts and the episode collector."""

from __future__ import annotations

import numpy as np
import pytest

from arvla.config import ConfigError
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


@pytest.mark.parametrize("task, seeds, min_rate", [
    ("pick_lift", range(8), 0.85), ("push", range(8), 0.85), ("cued_reach", range(10), 0.9)])
def test_scripted_expert_solves_its_task(task, seeds, min_rate):
    env = SimEnv(task=task)
    expert = make_expert(env)
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


def test_memory_task_after_the_cue_nothing_observable_depends_on_the_goal():
    """Same seed, goal flipped: once the cue is gone, images and joint states are bit-identical,
    so only memory of the cue can tell the goals apart (memoryless policy = chance)."""
    env = SimEnv(task="cued_reach")
    expert = make_expert(env)
    runs = []
    for flip in (False, True):
        obs = env.reset(7)
        if flip:
            env.task.set_goal(env.world, 1 - env.task.goal)
            obs = env.observe()
        first = env.render()
        states = []
        while env.world.time < env.task.go_at_s - 0.05:
            obs = env.step(expert.act(obs))
            states.append(obs["state"])
        runs.append((first, np.asarray(states), env.render(), int(obs["privileged"]["goal_index"][0])))
    (first_a, states_a, late_a, goal_a), (first_b, states_b, late_b, goal_b) = runs
    assert goal_a != goal_b
    assert not np.array_equal(first_a, first_b), "the cue must show the goal at the start"
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(late_a, late_b)


def test_memory_task_expert_does_not_move_until_a_chunk_past_the_cue():
    env = SimEnv(task="cued_reach")
    # A 16-step chunk (0.8 s at 20 Hz) predicted from the last cued frame, which reaches the
    # policy ~0.1-0.3 s late, must end before the demonstrator starts to move.
    assert env.task.go_delay_s >= 16 / 20.0 + 0.3
    expert = make_expert(env)
    obs = env.reset(1)
    start = obs["state"].copy()
    actions = []
    while env.world.time < env.task.go_at_s - 0.05:
        a = expert.act(obs)
        actions.append(a)
        obs = env.step(a)
    actions = np.asarray(actions)
    # One constant command (the start posture squared up to "gripper down"), nothing goal-directed.
    np.testing.assert_allclose(actions, actions[:1].repeat(len(actions), 0), atol=1e-6)
    np.testing.assert_allclose(actions[0, :7], start[:7], atol=0.05)
    for _ in range(10):  # and it does move right after
        obs = env.step(expert.act(obs))
    assert np.abs(obs["state"][:7] - start[:7]).max() > 0.02


def test_memory_task_locks_the_arm_until_the_go_time_whatever_is_commanded():
    """No policy can write the cue into its own posture: until go time the arm stays at the
    start posture under any command (here: a push toward the cued side), then follows."""
    env = SimEnv(task="cued_reach")
    obs = env.reset(3)
    start = obs["state"].copy()
    side = 1.0 if obs["privileged"]["goal_pos"][1] > 0 else -1.0
    push = start.copy()
    push[0] += 0.3 * side                      # joint 1 swings the arm toward the goal
    go = env.task.go_at_s
    while env.world.time < go - 1e-9:
        obs = env.step(push)
    assert np.abs(obs["state"][:7] - start[:7]).max() < 2e-3
    for _ in range(10):
        obs = env.step(push)
    assert (obs["state"][0] - start[0]) * side > 0.1


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

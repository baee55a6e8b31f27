"""Bags -> episodes on the control-step grid, episode files, and the bag2episodes command."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla.cli import main as arvla_main
from arvla_base.config import ConfigError, from_dict
from arvla_data.bag import BagRecorder
from arvla_data.episodes import (BagEpisodeConfig, EpisodeError, bag_to_episode, load_episode,
                                 save_episode, validate_episode)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_to_episode_grid_states_actions_frames(demo_bag, demo, storage):
    ep = bag_to_episode(demo_bag(storage=storage), BagEpisodeConfig(control_rate_hz=20.0))
    T = len(ep["states"])
    assert T == 40  # 2 s of joint states on a 20 Hz grid, t0 = first joint state
    assert ep["states"].dtype == np.float32 and ep["states"].shape == (40, 3)
    # joint order: the controller's (first command's), not the JointState message's
    assert list(ep["joint_names"]) == ["j3", "j1", "j2"]
    order = [2, 0, 1]
    expected_states = np.stack([demo.state_at(demo.T0 + k * demo.DT)[order] for k in range(T)])
    np.testing.assert_allclose(ep["states"], expected_states, atol=1e-6)
    # Commands arrive 2 ms after each tick with zero stamps, on a clock 50 s off: the action of
    # step k must be exactly the command of tick k.
    np.testing.assert_allclose(ep["actions"], np.stack([demo.command_for(k)[order] for k in range(T)]),
                               atol=1e-6)
    # Prefix i was captured at 200 ms * i + 3 ms -> step round(4 i + 0.06) = 4 i.
    np.testing.assert_array_equal(ep["frame_steps"], np.arange(10) * 4)
    assert ep["frame_steps"].dtype == np.int64
    assert ep["frame_tokens"].shape == (10, 2, 3)
    np.testing.assert_array_equal(ep["frame_tokens"][7].reshape(-1), 7 + np.arange(6))
    assert str(ep["model_id"]) == "tiny@8px" and str(ep["task"]) == "stack the cubes"
    assert float(ep["control_rate_hz"]) == 20.0
    assert "images" not in ep


def test_joint_order_and_rate_follow_the_config(demo_bag, demo):
    path = demo_bag(prefixes=False, images=False)
    ep = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=10.0, joint_names=["j3", "j1"]))
    assert list(ep["joint_names"]) == ["j3", "j1"] and ep["states"].shape == (20, 2)
    np.testing.assert_allclose(ep["states"][5], demo.state_at(demo.T0 + 5 * 100_000_000)[[2, 0]], atol=1e-6)
    # at 10 Hz, step k spans ticks 2k and 2k+1 of the 20 Hz commander: the newest by t_k + dt
    np.testing.assert_allclose(ep["actions"][5], demo.command_for(11)[[2, 0]], atol=1e-6)
    assert ep["frame_tokens"].shape == (0, 0, 0) and ep["frame_steps"].shape == (0,)


def test_actions_from_next_state_and_linear_sampling(demo_bag, demo):
    path = demo_bag(commands=False, prefixes=False, images=False)
    cfg = BagEpisodeConfig(control_rate_hz=8.0, command_topic="", state_sampling="linear")
    ep = bag_to_episode(path, cfg)
    period = 125_000_000
    grid = [demo.T0 + k * period for k in range(len(ep["states"]) + 1)]
    # no commands: the joint order of the JointState messages, gripper included
    assert list(ep["joint_names"]) == ["finger", "j3", "j1", "j2"]
    ep = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=8.0, command_topic="",
                                               state_sampling="linear", joint_names=demo.JOINTS))
    # (1e-4: linear interpolation error of the quadratic joint between 10 ms samples)
    np.testing.assert_allclose(ep["states"], [demo.state_at(t) for t in grid[:-1]], atol=1e-4)
    np.testing.assert_allclose(ep["actions"], ep["states"][1:].tolist() + [demo.state_at(grid[-1])],
                               atol=1e-4)
    # 8 Hz steps fall mid-interval of the 100 Hz samples: hold, nearest and linear differ
    hold = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=8.0, command_topic="",
                                                 joint_names=demo.JOINTS, state_sampling="hold"))
    ahead = np.stack([demo.state_at(demo.T0 + (k * period // demo.STATE_PERIOD) * demo.STATE_PERIOD)
                      for k in range(len(hold["states"]))])
    np.testing.assert_allclose(hold["states"], ahead, atol=1e-6)
    # 6 Hz: steps at 166.67 ms multiples, so the closest 10 ms sample is often the later one
    nearest = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=6.0, command_topic="",
                                                    joint_names=demo.JOINTS))
    p6 = round(1e9 / 6)
    closest = np.stack([demo.state_at(demo.T0 + math.ceil(k * p6 / demo.STATE_PERIOD - 0.5)
                                      * demo.STATE_PERIOD) for k in range(len(nearest["states"]))])
    np.testing.assert_allclose(nearest["states"], closest, atol=1e-6)
    hold6 = bag_to_episode(path, BagEpisodeConfig(control_rate_hz=6.0, command_topic="",
                                                  joint_names=demo.JOINTS, state_sampling="hold"))
    assert not np.allclose(nearest["states"], hold6["states"])


def test_images_kept_for_prefix_frames_and_as_frames_without_prefixes(demo_bag):
    ep = bag_to_episode(demo_bag(), BagEpisodeConfig(keep_images=True))
    assert ep["images"].shape == (10, 4, 6, 3) and ep["images"].dtype == np.uint8
    # prefix i is image 2 i; the fixture writes BGR with 200 in the blue channel
    assert ep["images"][3, 0, 0].tolist() == [6, 6, 200]
    ep2 = bag_to_episode(demo_bag(prefixes=False), BagEpisodeConfig(keep_images=True))
    np.testing.assert_array_equal(ep2["frame_steps"], np.arange(20) * 2)
    assert ep2["frame_tokens"].shape == (20, 0, 0) and ep2["images"].shape == (20, 4, 6, 3)


def test_bad_bags_give_clear_errors(tmp_path, demo_bag):
    with pytest.raises(EpisodeError, match=r"unknown joint name\(s\) \['elbow'\]"):
        bag_to_episode(demo_bag(prefixes=False, images=False),
                       BagEpisodeConfig(joint_names=["j1", "elbow"]))
    no_cmd = demo_bag(commands=False, prefixes=False, images=False)
    with pytest.raises(EpisodeError, match="no command topic /arm_controller/joint_trajectory"):
        bag_to_episode(no_cmd)
    ep = bag_to_episode(no_cmd, BagEpisodeConfig(command_optional=True))
    assert ep["states"].shape[0] == ep["actions"].shape[0]
    with pytest.raises(EpisodeError, match="no joint states topic /robot/joints"):
        bag_to_episode(no_cmd, BagEpisodeConfig(joint_states_topic="/robot/joints"))
    with pytest.raises(EpisodeError, match="has type sensor_msgs/msg/JointState, expected "
                                           "trajectory_msgs/msg/JointTrajectory"):
        bag_to_episode(no_cmd, BagEpisodeConfig(command_topic="/joint_states"))
    with BagRecorder(tmp_path / "empty") as bag:
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    with pytest.raises(EpisodeError, match="is empty"):
        bag_to_episode(tmp_path / "empty")
    with pytest.raises(ConfigError, match="control_rate_hz: must be > 0"):
        from_dict(BagEpisodeConfig, {"control_rate_hz": 0})
    with pytest.raises(ConfigError, match="state_sampling"):
        from_dict(BagEpisodeConfig, {"state_sampling": "cubic"})


def test_save_load_round_trip_is_atomic_and_validated(tmp_path, demo_bag):
    ep = bag_to_episode(demo_bag(), BagEpisodeConfig(keep_images=True))
    out = save_episode(tmp_path / "eps" / "demo.npz", ep)
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo.npz"]  # no temp left behind
    back = load_episode(out)
    for key in ("states", "actions", "frame_tokens", "frame_steps", "images", "joint_names"):
        np.testing.assert_array_equal(back[key], ep[key])
    assert str(back["task"]) == "stack the cubes"

    broken = dict(ep, frame_steps=ep["frame_steps"][::-1].copy())
    with pytest.raises(EpisodeError, match="frame_steps must increase"):
        save_episode(tmp_path / "eps" / "bad.npz", broken)
    assert not (tmp_path / "eps" / "bad.npz").exists()
    with pytest.raises(EpisodeError, match=r"states \(40, 3\) and actions \(39, 3\)"):
        validate_episode(dict(ep, actions=ep["actions"][:-1]))
    with pytest.raises(EpisodeError, match="missing key"):
        validate_episode({"states": ep["states"]})
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(EpisodeError, match="cannot read episode"):
        load_episode(tmp_path / "junk.npz")


def test_bag2episodes_command(tmp_path, demo_bag, capsys):
    bags = [demo_bag(), demo_bag(storage="sqlite3")]
    out = tmp_path / "episodes"
    assert arvla_main(["bag2episodes", *map(str, bags), "-o", str(out), "--control-rate-hz", "10"]) == 0
    files = sorted(out.glob("*.npz"))
    assert [f.stem for f in files] == [b.name for b in bags]
    assert load_episode(files[1])["states"].shape == (20, 3)
    assert arvla_main(["bag2episodes", str(tmp_path / "nope"), "-o", str(out)]) == 1
    assert "bag not found" in capsys.readouterr().err


def test_one_episode_schema():
    """Training data, bag conversion and the LeRobot import share one schema and one error."""
    import arvla_action_expert.data as data
    import arvla_base.episode as schema
    import arvla_data.episodes as episodes

    assert data.EpisodeError is episodes.EpisodeError is schema.EpisodeError
    assert data.Episode is schema.Episode and episodes.validate_episode is schema.validate_episode
    ep = data.synthetic_episodes(1, steps=12)[0]
    schema.validate_episode(ep.arrays())  # an Episode is a valid episode dict, and back:
    with pytest.raises(schema.EpisodeError, match="frame_tokens contains NaN/inf"):
        schema.validate_episode({**ep.arrays(), "frame_tokens": ep.frame_tokens * np.nan})

"""Closed-loop rollout and ROS collection through real nodes (sim, perception, expert)."""

from __future__ import annotations

import numpy as np

from arvla_data.bag import BagReader
from arvla_data.episodes import load_episode

SIM = {"image_height": 64, "image_width": 64, "camera_rate_hz": 10.0, "real_time_factor": 2.0}
# A small vision-only prefix: the node test needs the real backbone code, not its full size.
PERCEPTION = {"image_size": 64, "text_model_path": "none", "token_grid": [1, 1]}


def tiny_policy(prefix_dim: int):
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_sim.robot import JOINT_NAMES

    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=prefix_dim, max_prefix_tokens=4, n_embd=32,
                       n_layer=1, n_head=2, ffn=64, window=16, n_bins=8, delta_actions=True)
    return ExpertPolicy.build_untrained(cfg, joint_names=JOINT_NAMES)


def test_run_episodes_returns_a_well_formed_record():
    from arvla_eval.rollout import run_episodes
    from arvla_sim.robot import JOINT_NAMES

    policy = tiny_policy(1280)   # efficientnet-lite0 head features
    records = run_episodes(policy, task="pick_lift", seeds=[3], max_seconds=1.5,
                           sim_overrides={**SIM, "real_time_factor": 1.0},
                           perception_overrides=PERCEPTION, expert_overrides={"max_staleness": 30},
                           keep_frames=True, progress=False)
    assert len(records) == 1
    rec = records[0]
    assert (rec.policy, rec.task, rec.seed) == ("ar", "pick_lift", 3)
    assert rec.joint_names == list(JOINT_NAMES)
    assert not rec.success and rec.time_to_success is None     # random weights do not lift a cube
    T = rec.n_ticks
    assert T >= 8, T      # 30 ticks in 1.5 s at 20 Hz; a CPU shared with other jobs loses some
    assert rec.times[0] == 0.0 and rec.times[-1] >= 1.5 - 0.1
    # control ticks in sim time, about one period (50 ms) apart; the expert's sim-time timer
    # fires on /clock messages (every 10 ms), late by a clock tick or two on a loaded CPU
    gaps = np.diff(rec.times)
    assert gaps.min() > 0 and 0.04 <= np.median(gaps) <= 0.15, gaps
    assert rec.positions.shape == rec.commands.shape == (T, 8)
    # the expert ran on prefixes (staleness >= 0) and its commands differ from the measurements
    assert (rec.staleness_steps >= 0).any() and rec.staleness_steps.min() >= -1
    assert (rec.step_latency_s[rec.staleness_steps >= 0] > 0).all()
    assert np.abs(rec.commands - rec.positions).max() > 1e-4
    assert rec.frames is not None and rec.frames.shape[1:] == (64, 64, 3)


def test_an_episode_starts_at_rest_after_the_last_one():
    """The expert is disabled across the sim reset: it must not act on the new start posture
    with the last episode's memory (the arm then started the episode moving: a jerk spike)."""
    from arvla_eval.rollout import run_episodes

    policy = tiny_policy(1280)
    records = run_episodes(policy, task="pick_lift", seeds=[3, 4], max_seconds=1.0,
                           sim_overrides={**SIM, "real_time_factor": 1.0},
                           perception_overrides=PERCEPTION, expert_overrides={"max_staleness": 30},
                           progress=False)
    first, second = records
    assert np.abs(first.commands - first.positions).max() > 1e-4  # the arm was driven at the end
    start = second.joint_times <= second.joint_times[0] + 0.045  # before the expert's first plan lands
    moved = np.abs(second.joint_positions[start] - second.joint_positions[0]).max()
    assert moved < 1e-3, f"the arm moved {moved:.4f} rad in the episode's first 45 ms"


def test_collect_ros_writes_a_bag_and_an_episode(tmp_path):
    from arvla_eval.collect_ros import RECORDED_TOPICS, CollectConfig, collect_ros

    cfg = CollectConfig(task="pick_lift", seeds=[0], sim=SIM, perception=PERCEPTION)
    result = collect_ros(cfg, tmp_path, progress=False)
    assert [r.success for r in result.records] == [True]          # the scripted expert lifts it
    assert 1.5 < result.records[0].time_to_success < 6.0
    (bag,) = result.bags
    with BagReader(bag) as reader:
        topics = reader.topics
        assert set(topics) == set(RECORDED_TOPICS)
        for topic in ("/joint_states", "/arm_controller/joint_trajectory", "/arvla/vl_prefix",
                      "/camera/image_raw", "/arvla/instruction"):
            assert topics[topic].count > 0, topic
    (path,) = result.episodes
    ep = load_episode(path)
    T = len(ep["states"])
    assert ep["states"].shape == ep["actions"].shape == (T, 8) and T > 30
    F = len(ep["frame_steps"])
    assert F >= 3 and ep["frame_tokens"].shape == (F, 1, 1280)
    assert str(ep["task"]) == "pick_lift" and float(ep["control_rate_hz"]) == 20.0
    # the actions are the demonstrator's targets: they lead the measured state
    assert np.abs(ep["actions"] - ep["states"]).max() > 1e-3


def test_one_graph_runs_several_tasks():
    """``set_task`` swaps the sim node under a running graph (the demo evaluates all tasks
    with one perception + expert)."""
    from arvla_eval.rollout import RolloutGraph, ar_expert_factory, run_episodes

    policy = tiny_policy(1280)
    with RolloutGraph(task="pick_lift", expert_factory=ar_expert_factory(policy, {"max_staleness": 30}),
                      sim_overrides={**SIM, "real_time_factor": 1.0}, perception_overrides=PERCEPTION,
                      log_level="warn") as graph:
        records, sim = [], graph.sim
        for task in ("pick_lift", "cued_reach", "push"):
            records += run_episodes(policy, task=task, seeds=[1], max_seconds=0.6, graph=graph,
                                    progress=False)
        # one sim node throughout (its topics were never re-created), now on the last task
        assert graph.sim is sim and sim.config.task == "push" and sim.env.task.name == "push"
        assert sim.get_parameter("task").value == "push"
    assert [r.task for r in records] == ["pick_lift", "cued_reach", "push"]
    assert all(r.n_ticks >= 3 and r.times[-1] >= 0.5 for r in records)


"""Open-loop replay of a bag the test writes: arrival/capture timing, recorded actions, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
from arvla_action_expert.model import ExpertConfig
from arvla_action_expert.policy import ExpertPolicy
from arvla_data.bag import BagError, BagRecorder, make_typestore
from arvla_baselines.chunk import (ChunkConfig, ChunkExecConfig, ChunkMeta, ChunkPolicy,
                                     save_chunk_checkpoint)
from arvla.commands.replay import cli_main
from arvla_eval.replay import load_any_policy, replay_bag

JOINTS = ["j1", "j2", "j3"]
T0 = 500_000_000_000
DT = 50_000_000          # 20 Hz
WALL = 7_000_000_000     # receive time = stamp + 7 s (+ 1 ms transport)
STEPS = 40
FRAME_EVERY = 4
LATENCY_STEPS = 2        # prefix computed 2 periods (+1 ms) after its frame was captured


def command(k: int) -> np.ndarray:
    return np.array([0.01 * k, -0.02 * k, 0.005 * k])


def write_bag(path, *, prefixes: bool = True):
    store = make_typestore()
    T = store.types

    def stamp(ns):
        return T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    with BagRecorder(path, typestore=store) as bag:
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        bag.add_topic("/arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory")
        bag.add_topic("/arvla/vl_prefix", "arvla_msgs/msg/VLPrefix")
        msgs = []
        for k in range(STEPS):
            t = T0 + k * DT
            q = command(k - 1) if k else np.zeros(3)
            msgs.append((t + WALL + 1_000_000, "/joint_states", T["sensor_msgs/msg/JointState"](
                header=T["std_msgs/msg/Header"](stamp=stamp(t), frame_id=""),
                name=["j3", "j1", "j2"], position=q[[2, 0, 1]], velocity=np.zeros(0),
                effort=np.zeros(0))))
            point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=command(k), velocities=np.zeros(0), accelerations=np.zeros(0),
                effort=np.zeros(0), time_from_start=T["builtin_interfaces/msg/Duration"](
                    sec=0, nanosec=DT))
            msgs.append((t + WALL + 2_000_000, "/arm_controller/joint_trajectory",
                         T["trajectory_msgs/msg/JointTrajectory"](
                             header=T["std_msgs/msg/Header"](stamp=stamp(0), frame_id=""),
                             joint_names=JOINTS, points=[point])))
            if prefixes and k % FRAME_EVERY == 0:
                done = t + LATENCY_STEPS * DT + 1_000_000
                data = np.random.default_rng(k).normal(size=2 * 8).astype(np.float32)
                msgs.append((done + WALL + 1_000_000, "/arvla/vl_prefix", T["arvla_msgs/msg/VLPrefix"](
                    header=T["std_msgs/msg/Header"](stamp=stamp(t), frame_id="cam"),
                    frame_seq=k, instruction="reach", model_id="m", token_count=2, dim=8,
                    data=data, compute_stamp=stamp(done))))
        for t_log, topic, msg in sorted(msgs, key=lambda m: m[0]):
            bag.write(topic, t_log, msg)
    return path


def _chunk_policy():
    cfg = ChunkConfig(state_dim=3, action_dim=3, prefix_dim=8, max_prefix_tokens=4, chunk=4,
                      n_embd=16, n_head=2, n_enc_layer=1, n_dec_layer=1, ffn=32, dropout=0.0)
    return ChunkPolicy.build_untrained(cfg, model_id="m", joint_names=JOINTS)


def test_replay_timing_and_recorded_actions(tmp_path):
    bag = write_bag(tmp_path / "bag")
    result = replay_bag(bag, _chunk_policy(), max_staleness=10)
    # the first prefix (captured at step 0) arrives after 2 periods + 1 ms: installed at tick 3
    assert result.steps[0] == LATENCY_STEPS + 1 and result.held == LATENCY_STEPS + 1
    assert result.prefixes_used == STEPS // FRAME_EVERY
    # each prefix is installed 3 ticks after capture and replaced 4 ticks later
    assert set(result.staleness.tolist()) == {3, 4, 5, 6}
    np.testing.assert_array_equal(result.staleness[:5], [3, 4, 5, 6, 3])
    # recorded action of step k = the command sent during step k (zero-stamped, receive time
    # moved onto the stamp clock)
    np.testing.assert_allclose(result.recorded, np.stack([command(k) for k in result.steps]))
    assert result.mae == pytest.approx(np.mean(np.abs(result.predicted - result.recorded)))
    assert (result.latency_s > 0).all() and len(result.latency_s) == len(result.steps)
    text = result.summary()
    assert "staleness (steps): p50" in text and "action MAE" in text
    # the recorded motion's smoothness, at its stamps: the commands ramp (no jerk); the joint
    # states ramp after one kink at the start
    assert result.recorded_command_jerk == pytest.approx(0.0, abs=1e-6)
    assert 0 < result.recorded_jerk < 100 and "recorded motion: RMS jerk" in text
    # a tighter staleness limit holds the ticks beyond it
    tight = replay_bag(bag, _chunk_policy(), max_staleness=4)
    assert set(tight.staleness.tolist()) == {3, 4}


def test_replay_without_prefixes_needs_action_only(tmp_path):
    bag = write_bag(tmp_path / "bag", prefixes=False)
    with pytest.raises(BagError, match="never acted"):
        replay_bag(bag, _chunk_policy())
    result = replay_bag(bag, _chunk_policy(), allow_action_only=True)
    assert (result.staleness == -1).all() and result.steps[0] == 0


def test_replay_cli_with_both_checkpoint_kinds(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag")
    pol = _chunk_policy()
    chunk_dir = save_chunk_checkpoint(tmp_path / "chunk", pol.model, state_norm=pol.state_norm,
                                      target_norm=pol.target_norm,
                                      meta=ChunkMeta(model_id="m", joint_names=JOINTS),
                                      exec_config=ChunkExecConfig())
    te = load_any_policy(chunk_dir, mode="temporal_ensemble")
    assert isinstance(te, ChunkPolicy) and te.exec.mode == "temporal_ensemble"
    cfg = ExpertConfig(state_dim=3, action_dim=3, prefix_dim=8, max_prefix_tokens=4, n_embd=16,
                       n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    ar = ExpertPolicy.build_untrained(cfg)
    ar_dir = save_checkpoint(tmp_path / "ar", ar.model, state_norm=ar.state_norm,
                             target_norm=ar.target_norm,
                             meta=CheckpointMeta(model_id="m", joint_names=JOINTS))
    assert isinstance(load_any_policy(ar_dir), ExpertPolicy)
    for ckpt in (chunk_dir, ar_dir):
        assert cli_main([str(bag), "--checkpoint", str(ckpt)]) == 0
        assert "action MAE vs recorded" in capsys.readouterr().out
    assert cli_main([str(tmp_path / "nope"), "--checkpoint", str(ar_dir)]) == 2
    assert "bag not found" in capsys.readouterr().err

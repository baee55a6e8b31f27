"""Faults around the running expert: clock jumps, restarts, bad checkpoints, pickles.

A node that cannot act safely must not start (ConfigError / CheckpointError naming the problem);
a node that is running must reset its memory when time runs backwards and start clean after a
restart. Pickles are never unpickled: a pickle whose ``__reduce__`` creates a marker file is
offered in every place a weight file is read, and the marker must never appear.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from arvla_msgs.msg import ExpertStatus
from rclpy.parameter import Parameter

from arvla_base.config import ConfigError
from arvla_action_expert.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from expert_harness import JOINTS, MODEL_ID, PERIOD_NS, PREFIX_DIM, base_params
from faultlib import PickleBomb

RUNNING, HOLDING, FAULT, WAITING = (ExpertStatus.STATE_RUNNING, ExpertStatus.STATE_HOLDING,
                                    ExpertStatus.STATE_FAULT, ExpertStatus.STATE_WAITING)
GOOD = {"j1": 0.1, "j2": -0.2, "j3": 0.05}


def _run_ticks(h, mon, n: int):
    out = []
    for _ in range(n):
        h.joint_state(GOOD)
        mon.start = np.array([GOOD[j] for j in JOINTS])
        h.prefix(h.now_ns)
        out.append(h.tick())
        assert out[-1].status.state == RUNNING, out[-1].status.reason
    return out


# --------------------------------------------------------------------------- clock jumps


def test_clock_jumps_back_reset_memory_and_reject_old_timeline(expert_rig, ledger):
    """Bag loop / sim reset, three times: memory reset, in-flight prefixes of the old timeline
    (now "from the future") rejected, nothing published until fresh joint states arrive."""
    h, mon = expert_rig()
    h.tick()
    for loop in range(3):
        ticks = _run_ticks(h, mon, 5)
        assert ticks[-1].status.cache_fill >= 4
        old_now = h.now_ns
        ledger.fault("clock_jump_back")
        # back 5 s; rcl re-arms a ROS-time timer one period after a backward jump
        h.set_clock_and_wait(old_now - 5_000_000_000)
        t = h.tick(old_now - 5_000_000_000 + PERIOD_NS)
        assert t.status.step == 0 and t.status.cache_fill == 0
        assert t.status.state == WAITING and t.trajectory is None, t.status.reason
        # a prefix computed before the jump arrives late: stamp lies ahead of the new clock
        h.joint_state(GOOD)
        h.prefix(old_now)
        ledger.input("prefix:old_timeline")
        t = h.tick()
        assert t.status.rejected_prefixes == 1 and t.status.staleness_steps == -1
        assert t.status.state == WAITING and t.trajectory is None
        ticks = _run_ticks(h, mon, 1)
        assert ticks[0].status.cache_fill == 1 and ticks[0].status.step == 2


def test_clock_jump_forward_holds_on_stale_prefix(expert_rig, ledger):
    """A paused sim resumed 60 s later: the prefix is 1200 steps old -> hold, then recover."""
    h, mon = expert_rig()
    h.tick()
    _run_ticks(h, mon, 3)
    ledger.fault("clock_jump_forward")
    ticks, statuses = h.node.counters.ticks, len(h.statuses)
    h.set_clock_and_wait(h.now_ns + 60_000_000_000)
    # the overdue timer fires at the jump: the joint state is 60 s old there -> FAULT + hold
    h._wait(lambda: h.node.counters.ticks > ticks and len(h.statuses) > statuses, "the tick at the jump")
    jump = h.statuses[-1]
    assert jump.state == FAULT and "joint_states stale" in jump.reason, jump.reason
    h.joint_state(GOOD)
    t = h.tick()
    assert t.status.state == HOLDING and "stale" in t.status.reason, t.status.reason
    assert t.status.staleness_steps > 1000 and mon.is_hold(t.trajectory)
    _run_ticks(h, mon, 2)


# --------------------------------------------------------------------------- restarts


def test_expert_restart_resumes_from_clean_memory(expert_rig, ros_context, executor, ledger):
    """The same policy object in a new node (in-process restart): memory starts empty."""
    from arvla_action_expert.node import ActionExpertNode

    h, mon = expert_rig()
    h.tick()
    ticks = _run_ticks(h, mon, 6)
    assert ticks[-1].status.cache_fill == 6
    ledger.fault("expert_restart")
    executor.remove_node(h.node)
    h.node.destroy_node()
    h.node = ActionExpertNode(policy=h.policy, context=ros_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in base_params().items()])
    executor.add_node(h.node)
    h.tick()  # first tick of the new node: episode origin
    t = _run_ticks(h, mon, 1)[0]
    assert t.status.cache_fill == 1 and t.status.step == 1, (t.status.cache_fill, t.status.step)


def test_node_without_joints_is_a_config_error_naming_joints(ros_context):
    from expert_harness import tiny_policy

    from arvla_action_expert.node import ActionExpertNode

    with pytest.raises(ConfigError, match="joints"):
        ActionExpertNode(policy=tiny_policy(), context=ros_context)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint(path, *, state_dim: int = 3, n_embd: int = 16, control_rate_hz: float = 20.0):
    import torch

    from arvla_action_expert.model import ARExpert, ExpertConfig
    from arvla_action_expert.normalize import Normalizer

    cfg = ExpertConfig(state_dim=state_dim, action_dim=state_dim, prefix_dim=PREFIX_DIM, max_prefix_tokens=4,
                       n_embd=n_embd, n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    torch.manual_seed(0)
    meta = CheckpointMeta(model_id=MODEL_ID, control_rate_hz=control_rate_hz,
                          joint_names=JOINTS[:state_dim] if state_dim <= 3 else [], stage=2)
    return save_checkpoint(path, ARExpert(cfg), state_norm=Normalizer.identity(state_dim),
                           target_norm=Normalizer.identity(state_dim), meta=meta)


def _start_node(ros_context, checkpoint):
    from arvla_action_expert.node import ActionExpertNode

    params = base_params(checkpoint=str(checkpoint))
    return ActionExpertNode(policy=None, context=ros_context,
                            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _drop_sha(ckpt):
    doc = json.loads((ckpt / "config.json").read_text())
    doc["weights_sha256"] = None
    (ckpt / "config.json").write_text(json.dumps(doc))


def _corrupt(kind, tmp_path):
    """Make a broken checkpoint of ``kind``; return (path, exception type, message fragment)."""
    ck = _checkpoint(tmp_path / "ck")
    if kind == "weights_truncated":
        _truncate(ck / "model.safetensors")
        return ck, CheckpointError, "model.safetensors: sha256 differs"
    if kind == "weights_truncated_no_sha":
        _drop_sha(ck)
        _truncate(ck / "model.safetensors")
        return ck, CheckpointError, "corrupt or truncated safetensors"
    if kind == "weights_empty":
        _drop_sha(ck)
        (ck / "model.safetensors").write_bytes(b"")
        return ck, CheckpointError, "corrupt or truncated safetensors"
    if kind == "config_truncated":
        _truncate(ck / "config.json", 0.3)
        return ck, CheckpointError, "config.json: not valid JSON (truncated?)"
    if kind == "config_from_other_model":  # config.json of a wider model next to these weights
        other = _checkpoint(tmp_path / "other", n_embd=32)
        (ck / "config.json").write_text((other / "config.json").read_text())
        _drop_sha(ck)
        return ck, CheckpointError, "expected shape"
    if kind == "other_state_dim":
        return _checkpoint(tmp_path / "dim4", state_dim=4), ConfigError, "joints"
    if kind == "other_control_rate":
        return _checkpoint(tmp_path / "rate", control_rate_hz=50.0), ConfigError, "control_rate"
    if kind == "missing_weights":
        (ck / "model.safetensors").unlink()
        return ck, CheckpointError, "missing model.safetensors"
    if kind == "not_a_checkpoint":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", CheckpointError, "missing config.json"
    raise AssertionError(kind)


CORRUPTIONS = ["weights_truncated", "weights_truncated_no_sha", "weights_empty", "config_truncated",
               "config_from_other_model", "other_state_dim", "other_control_rate", "missing_weights",
               "not_a_checkpoint"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_bad_checkpoint_refuses_to_start(ros_context, tmp_path, ledger, kind):
    path, err_type, fragment = _corrupt(kind, tmp_path)
    ledger.fault(f"checkpoint:{kind}")
    with pytest.raises(err_type) as info:
        _start_node(ros_context, path)
    assert fragment in str(info.value), str(info.value)


def test_good_checkpoint_starts(ros_context, tmp_path):
    node = _start_node(ros_context, _checkpoint(tmp_path / "ck"))
    try:
        assert node.policy.cache_fill == 0 and node.policy.model_id == MODEL_ID
    finally:
        node.destroy_node()


def test_console_main_refuses_a_truncated_checkpoint(tmp_path, capfd, ledger):
    """The process entry point: exit code 1 and a fatal log naming the file."""
    from arvla_action_expert.node import main

    ck = _checkpoint(tmp_path / "ck")
    _truncate(ck / "model.safetensors")
    ledger.fault("checkpoint:truncated_main")
    rc = main(["--ros-args", "-p", f"checkpoint:={ck}", "-p", "joints:=[j1, j2, j3]",
               "-p", "position_min:=[-1.0, -2.0, -0.5]", "-p", "position_max:=[1.0, 2.0, 0.5]",
               "-p", "max_velocity:=[1.0, 2.0, 0.5]"])
    err = capfd.readouterr().err
    assert rc == 1 and "cannot start" in err and "model.safetensors" in err, err


# --------------------------------------------------------------------------- pickles


@pytest.mark.parametrize("where", ["pt_file", "pth_file", "pkl_file", "in_place_of_safetensors",
                                   "in_place_with_matching_sha"])
def test_pickled_checkpoints_are_never_unpickled(ros_context, tmp_path, ledger, where):
    marker = tmp_path / "PWNED"
    bomb = pickle.dumps({"model": PickleBomb(marker)})
    if where.endswith("_file"):
        path = tmp_path / f"expert.{where.split('_')[0]}"
        path.write_bytes(bomb)
        fragment = "refusing to load a pickle-based checkpoint"
    else:
        path = _checkpoint(tmp_path / "ck")
        (path / "model.safetensors").write_bytes(bomb)
        if where == "in_place_with_matching_sha":  # the config was forged to match the pickle
            import hashlib

            doc = json.loads((path / "config.json").read_text())
            doc["weights_sha256"] = hashlib.sha256(bomb).hexdigest()
            (path / "config.json").write_text(json.dumps(doc))
            fragment = "corrupt or truncated safetensors"
        else:
            fragment = "sha256 differs"
    ledger.fault(f"pickle:{where}")
    with pytest.raises(CheckpointError, match=fragment):
        _start_node(ros_context, path)
    from arvla_action_expert.policy import ExpertPolicy

    with pytest.raises(CheckpointError):
        ExpertPolicy.from_checkpoint(path)
    assert not marker.exists(), "a pickle was executed"
    pickle.loads(bomb)  # the bomb is live: unpickling it does create the marker
    assert marker.exists()


def test_pickled_perception_weights_and_datasets_are_never_unpickled(tmp_path, ledger):
    """The perception backbone's .pth (torch.load weights_only) and episode .npz files
    (np.load allow_pickle=False) refuse a pickle whose __reduce__ would run code."""
    from arvla_action_expert.data import EpisodeError as DataEpisodeError, NpzEpisodeDir
    from arvla_data.episodes import EpisodeError, load_episode
    from arvla_perception.backbone import BackboneError, load_backbone
    from arvla_perception.config import PerceptionConfig

    marker = tmp_path / "PWNED"
    weights = tmp_path / "evil.pth"
    import torch

    torch.save({"stem.weight": PickleBomb(marker)}, weights)
    ledger.fault("pickle:perception_pth")
    with pytest.raises(BackboneError):
        load_backbone(PerceptionConfig(model_path=str(weights), text_model_path="none"))
    assert not marker.exists()

    episodes = tmp_path / "episodes"
    episodes.mkdir()
    n = 4
    np.savez(episodes / "evil.npz", states=np.zeros((n, 3), np.float32), actions=np.zeros((n, 3), np.float32),
             frame_tokens=np.array([PickleBomb(marker)], dtype=object), frame_steps=np.zeros(1, np.int64),
             control_rate_hz=np.float64(20.0), model_id=np.str_(""), joint_names=np.array(JOINTS),
             task=np.str_("t"))
    ledger.fault("pickle:episode_npz", 2)
    with pytest.raises(EpisodeError):
        load_episode(episodes / "evil.npz")
    with pytest.raises((DataEpisodeError, ValueError)):
        NpzEpisodeDir(episodes)[0]
    assert not marker.exists(), "a pickle inside an .npz was executed"

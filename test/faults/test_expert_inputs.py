"""Bad VLPrefix and JointState messages into the RUNNING action expert node (real topics).

Each case: the expert is running on good inputs, the bad message arrives, the node must keep
ticking (a status every tick), publish nothing unsafe (SafetyMonitor + the harness's fake JTC),
say why in ExpertStatus (state + reason / counters), and run again once good input returns.
Sim time with a manual /clock (test/expert_node/expert_harness.py), so every tick is exact.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
from arvla_msgs.msg import ExpertStatus

from expert_harness import JOINTS, MODEL_ID, PERIOD_NS, PREFIX_DIM
from faultlib import joint_state_msg, prefix_msg

GOOD = {"j1": 0.1, "j2": -0.2, "j3": 0.05}
RUNNING, HOLDING, FAULT, WAITING = (ExpertStatus.STATE_RUNNING, ExpertStatus.STATE_HOLDING,
                                    ExpertStatus.STATE_FAULT, ExpertStatus.STATE_WAITING)


def _send_prefix(h: Any, ledger: Any, kind: str, stamp_ns: int, *, frame_seq: int | None = None,
                 model_id: str = MODEL_ID, token_count: int = 2, dim: int = PREFIX_DIM,
                 data: Any = None) -> None:
    if frame_seq is None:
        h.frame_seq += 1
        frame_seq = h.frame_seq
    if data is None:
        data = np.random.default_rng(frame_seq).standard_normal(token_count * dim)
    before = h.node.counters.prefixes_received
    h.prefix_pub.publish(prefix_msg(stamp_ns, frame_seq=frame_seq, model_id=model_id,
                                    token_count=token_count, dim=dim, data=data))
    ledger.input(f"prefix:{kind}")
    h._wait(lambda: h.node.counters.prefixes_received > before, f"prefix delivery ({kind})")


def _send_js(h: Any, ledger: Any, kind: str, names: list[str], positions: list[float]) -> None:
    before = h.node.counters.joint_states_received
    h.js_pub.publish(joint_state_msg(names, positions))
    ledger.input(f"joint_state:{kind}")
    h._wait(lambda: h.node.counters.joint_states_received > before, f"joint state delivery ({kind})")


def _good_js(h: Any, mon: Any, values: dict[str, float] = GOOD) -> None:
    h.joint_state(values)
    mon.start = np.array([values[j] for j in JOINTS])


def _running(h: Any, mon: Any) -> Any:
    """Good joint state + a fresh prefix; the next tick must be RUNNING with a trajectory."""
    _good_js(h, mon)
    h.prefix(h.now_ns)
    t = h.tick()
    assert t.status.state == RUNNING, t.status.reason
    assert t.trajectory is not None
    return t


def _start(expert_rig: Callable[..., Any]) -> tuple[Any, Any]:
    h, mon = expert_rig()
    h.tick()  # episode origin
    _running(h, mon)
    return h, mon


# (kind, prefix kwargs (stamp: "now"/"future"/"zero"), expected state, reason fragment)
BAD_PREFIXES = [
    ("wrong_dim", dict(dim=PREFIX_DIM + 1), FAULT, f"prefix dim {PREFIX_DIM + 1} != policy prefix_dim"),
    ("nan_data", dict(data=np.full(2 * PREFIX_DIM, np.nan)), FAULT, "NaN/inf"),
    ("inf_data", dict(data=np.r_[np.full(2 * PREFIX_DIM - 1, 1.0), np.inf]), FAULT, "NaN/inf"),
    ("huge_token_count", dict(token_count=10**6, data=np.ones(16)), FAULT, "token_count 1000000"),
    ("zero_tokens", dict(token_count=0, data=np.ones(0)), FAULT, "token_count 0"),
    ("data_shorter_than_header", dict(data=np.ones(5)), FAULT, "data has 5 values"),
    ("wrong_model_id", dict(model_id="other-backbone@v9"), FAULT, "model_id"),
    ("data_50MB", dict(data=np.ones(50 * 2**20 // 4, np.float32)), FAULT, f"data has {50 * 2**18} values"),
    # finite, but the encoder overflows (issue #19: this killed the expert until restart)
    ("huge_finite_1e30", dict(data=np.full(2 * PREFIX_DIM, 1e30)), FAULT, "prefix refresh failed"),
    ("huge_finite_-1e23", dict(data=np.full(2 * PREFIX_DIM, -1e23)), FAULT, "prefix refresh failed"),
    ("float32_max", dict(data=np.full(2 * PREFIX_DIM, 3.4e38)), FAULT, "prefix refresh failed"),
]


@pytest.mark.parametrize("kind,kwargs,state,reason", BAD_PREFIXES, ids=[c[0] for c in BAD_PREFIXES])
def test_bad_prefix_faults_holds_and_recovers(expert_rig, ledger, kind, kwargs, state, reason):
    h, mon = _start(expert_rig)
    rejected = h.node.counters.rejected_prefixes
    _good_js(h, mon)
    _send_prefix(h, ledger, kind, h.now_ns, **kwargs)
    t = h.tick()
    assert t.status.state == state and reason in t.status.reason, (t.status.state, t.status.reason)
    assert t.status.rejected_prefixes == rejected + 1
    assert t.trajectory is not None and mon.is_hold(t.trajectory), "a bad prefix must hold the arm"
    assert list(t.trajectory.points[0].positions) == pytest.approx([GOOD[j] for j in JOINTS])
    # still ticking, still holding, until a good prefix arrives; then running again
    _good_js(h, mon)
    assert h.tick().status.state == state
    _running(h, mon)


def test_prefix_stamps_future_zero_duplicate_out_of_order(expert_rig, ledger):
    """Stamps decide; frame_seq is informative only (perception restarts reset it)."""
    h, mon = _start(expert_rig)
    c = h.node.counters

    # future stamp (10 s ahead): rejected and counted, the prefix in use stays
    used_seq = h.statuses[-1].prefix_frame_seq
    rejected = c.rejected_prefixes
    _good_js(h, mon)
    _send_prefix(h, ledger, "future_stamp", h.now_ns + 10_000_000_000)
    t = h.tick()
    assert t.status.rejected_prefixes == rejected + 1 and t.status.prefix_frame_seq == used_seq
    assert t.status.state == RUNNING and t.status.staleness_steps >= 0

    # zero stamp (an unstamped header): never used, never moves the arm
    dropped_before = c.ignored_old_prefixes + c.rejected_prefixes
    _good_js(h, mon)
    _send_prefix(h, ledger, "zero_stamp", 0)
    t = h.tick()
    assert t.status.prefix_frame_seq == used_seq and t.status.staleness_steps >= 0
    assert c.ignored_old_prefixes + c.rejected_prefixes == dropped_before + 1

    # exact duplicate (same stamp, same frame_seq): ignored
    _good_js(h, mon)
    stamp = h.now_ns
    _send_prefix(h, ledger, "fresh", stamp, frame_seq=500)
    t = h.tick()
    assert t.status.prefix_frame_seq == 500
    ignored = c.ignored_old_prefixes
    _send_prefix(h, ledger, "duplicate", stamp, frame_seq=500)
    t = h.tick()
    assert c.ignored_old_prefixes == ignored + 1 and t.status.state == RUNNING

    # out of order: a newer frame, then an older one arrives late -> the older one is ignored
    _good_js(h, mon)
    _send_prefix(h, ledger, "newer", h.now_ns, frame_seq=502)
    _send_prefix(h, ledger, "late_older", h.now_ns - PERIOD_NS, frame_seq=501)
    t = h.tick()
    assert t.status.prefix_frame_seq == 502 and t.status.state == RUNNING

    # frame_seq going backwards with a newer stamp (perception restarted): used
    _good_js(h, mon)
    _send_prefix(h, ledger, "seq_reset", h.now_ns, frame_seq=1)
    t = h.tick()
    assert t.status.prefix_frame_seq == 1 and t.status.state == RUNNING
    assert t.status.staleness_steps in (0, 1)


def test_zero_stamped_first_prefix_is_rejected_with_a_reason(expert_rig, ledger):
    """A first prefix without a capture stamp cannot be re-anchored: rejected, not "very stale"."""
    h, mon = expert_rig()
    h.tick()
    _good_js(h, mon)
    _send_prefix(h, ledger, "zero_stamp_first", 0)
    t = h.tick()
    assert t.status.state == FAULT and "stamp" in t.status.reason, t.status.reason
    assert t.status.rejected_prefixes == 1 and t.status.staleness_steps == -1
    _running(h, mon)


# (kind, names, positions, expected state, reason fragment, hold expected)
NAN, INF = math.nan, math.inf
BAD_JOINT_STATES = [
    ("missing_joint", ["j1", "j2"], [0.1, -0.2], FAULT, "lacks joints ['j3']"),
    ("nan_position", ["j1", "j2", "j3"], [0.1, NAN, 0.05], FAULT, "NaN/inf position for ['j2']"),
    ("inf_position", ["j1", "j2", "j3"], [INF, -0.2, 0.05], FAULT, "NaN/inf position for ['j1']"),
    ("minus_inf_position", ["j1", "j2", "j3"], [0.1, -0.2, -INF], FAULT, "NaN/inf position for ['j3']"),
    ("fewer_positions_than_names", ["j1", "j2", "j3"], [0.1, -0.2], FAULT, "lacks joints ['j3']"),
    ("empty", [], [], FAULT, "lacks joints"),
    ("no_positions", ["j1", "j2", "j3"], [], FAULT, "lacks joints"),
    # issue #19: the last value used to win, so the plan's velocity bound held relative to it
    ("duplicate_name_conflicting", ["j1", "j2", "j3", "j1"], [0.1, -0.2, 0.05, 0.6], FAULT,
     "names ['j1'] more than once"),
    ("duplicate_name_nan_and_value", ["j2", "j1", "j2", "j3"], [NAN, 0.1, -0.2, 0.05], FAULT,
     "names ['j2'] more than once"),
]


@pytest.mark.parametrize("kind,names,positions,state,reason", BAD_JOINT_STATES,
                         ids=[c[0] for c in BAD_JOINT_STATES])
def test_bad_joint_state_holds_last_good_position(expert_rig, ledger, kind, names, positions, state, reason):
    h, mon = _start(expert_rig)
    h.prefix(h.now_ns)
    _send_js(h, ledger, kind, names, positions)
    t = h.tick()
    assert t.status.state == state and reason in t.status.reason, (t.status.state, t.status.reason)
    assert t.trajectory is not None and mon.is_hold(t.trajectory)
    assert list(t.trajectory.points[0].positions) == pytest.approx([GOOD[j] for j in JOINTS])
    _running(h, mon)


def test_joint_states_extra_reordered_longer_repeated(expert_rig, ledger):
    """Benign oddities keep running, read by name; absurd values never leave the limits."""
    h, mon = _start(expert_rig)

    def run_with(kind: str, names: list[str], positions: list[float], by_name: dict[str, float]) -> Any:
        h.prefix(h.now_ns)
        _send_js(h, ledger, kind, names, positions)
        mon.start = np.array([by_name[j] for j in JOINTS])
        t = h.tick()
        assert t.status.state == RUNNING, (kind, t.status.reason)
        # prove the by-name reading: a NaN now holds exactly at the by-name values
        _send_js(h, ledger, f"{kind}+nan", ["j1", "j2", "j3"], [NAN, NAN, NAN])
        hold = h.tick()
        assert hold.status.state == FAULT and mon.is_hold(hold.trajectory)
        assert list(hold.trajectory.points[0].positions) == pytest.approx(
            [float(np.clip(by_name[j], lo, hi)) for j, lo, hi in zip(JOINTS, [-1, -2, -0.5], [1, 2, 0.5])])
        return t

    vals = {"j1": 0.3, "j2": -0.4, "j3": 0.2}
    run_with("extra_joints", ["gripper", "j1", "base_x", "j2", "j3"], [0.02, 0.3, 5.0, -0.4, 0.2], vals)
    run_with("reordered", ["j3", "j1", "j2"], [0.2, 0.3, -0.4], vals)
    run_with("more_positions_than_names", ["j1", "j2", "j3"], [0.3, -0.4, 0.2, 9.0, 9.0], vals)
    run_with("duplicate_name_same_value", ["j1", "j2", "j3", "j1"], [0.3, -0.4, 0.2, 0.3], vals)
    run_with("duplicate_unused_joint", ["gripper", "j1", "j2", "j3", "gripper"], [0.0, 0.3, -0.4, 0.2, 0.9], vals)
    # slightly outside a limit (encoder noise, overshoot): runs, commands from the clamped value
    run_with("slightly_outside_limit", ["j1", "j2", "j3"], [1.05, -0.4, 0.2], {"j1": 1.05, "j2": -0.4, "j3": 0.2})


@pytest.mark.parametrize("value", [1e300, -1e300, 1e6, 7.0])
def test_implausible_finite_joint_state_holds_and_does_not_poison_memory(expert_rig, ledger, value):
    """A finite but absurd reading (1e300 rad, a unit mix-up): FAULT + hold at the last good
    position (not at the limit it would be clamped to), and the policy memory stays clean."""
    h, mon = _start(expert_rig)
    for _ in range(3):
        h.prefix(h.now_ns)
        _send_js(h, ledger, f"implausible:{value:g}", ["j1", "j2", "j3"], [0.1, value, 0.05])
        t = h.tick()
        assert t.status.state == FAULT and "implausible" in t.status.reason and "j2" in t.status.reason
        assert mon.is_hold(t.trajectory)
        assert list(t.trajectory.points[0].positions) == pytest.approx([GOOD[j] for j in JOINTS])
    for _ in range(3):
        t = _running(h, mon)
        assert all(np.isfinite(p.positions).all() for p in t.trajectory.points)

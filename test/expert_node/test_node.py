"""The action expert node with real nodes and messages in-process, driven by a manual /clock.

Every test also runs the fake JTC (expert_harness.FakeJTC) on everything the expert publishes; the
``make_harness`` fixture fails the test if any message broke a JTC rule or a joint limit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla_msgs.msg import ExpertStatus

from expert_harness import JOINTS, LOWER, MODEL_ID, PERIOD_NS, PREFIX_DIM, T_START_NS, UPPER, tiny_policy

WAITING, RUNNING, HOLDING, FAULT, DISABLED = (ExpertStatus.STATE_WAITING, ExpertStatus.STATE_RUNNING,
                                              ExpertStatus.STATE_HOLDING, ExpertStatus.STATE_FAULT,
                                              ExpertStatus.STATE_DISABLED)
Q0 = {"j1": 0.1, "j2": -0.2, "j3": 0.05}


@pytest.fixture
def harness(make_harness):
    created = []

    def make(**kwargs):
        h = make_harness(**kwargs)
        created.append(h)
        return h

    yield make
    for h in created:
        assert not h.jtc.violations, h.jtc.violations[:5]


def positions(traj) -> np.ndarray:
    return np.array([list(p.positions) for p in traj.points])


def assert_hold_at(tick, q: dict[str, float]) -> None:
    assert tick.trajectory is not None, f"expected a hold, got nothing (status: {tick.status.reason})"
    pts = tick.trajectory.points
    assert len(pts) == 1 and list(pts[0].velocities) == [0.0, 0.0, 0.0]
    assert pts[0].time_from_start.sec * 10**9 + pts[0].time_from_start.nanosec == PERIOD_NS
    np.testing.assert_allclose(positions(tick.trajectory)[0], [np.clip(q[j], lo, hi) for j, lo, hi in
                                                               zip(JOINTS, LOWER, UPPER)])


def running(h, ticks: int = 1):
    """Tick with fresh joint states; return the last tick."""
    for _ in range(ticks):
        h.joint_state(Q0)
        t = h.tick()
    return t


def test_staleness_matches_prefix_delays(harness):
    h = harness(max_staleness=4)
    h.joint_state(Q0)
    first = h.tick()
    assert first.status.step == 0 and first.status.state == WAITING
    assert first.status.staleness_steps == -1
    step = 0
    for delay in range(5):
        for _ in range(5):  # let time pass so the next stamp is newer than the last one
            running(h)
            step += 1
        step += 1
        seq = h.prefix(h.step_time(step - delay))
        h.joint_state(Q0)
        t = h.tick()
        s = t.status
        assert (s.step, s.state, s.reason) == (step, RUNNING, "")
        assert s.prefix_capture_step == step - delay and s.staleness_steps == delay
        assert s.staleness_sec == pytest.approx(delay * PERIOD_NS * 1e-9)
        assert s.prefix_frame_seq == seq
        assert len(t.trajectory.points) == 5 and s.step_latency_sec > 0  # the point in execution + 4 rows
        # the same prefix ages by one step per tick
        assert running(h).status.staleness_steps == delay + 1
        step += 1
    assert h.statuses[-1].rejected_prefixes == 0


def test_stamp_between_ticks_rounds_to_the_nearest_step(harness):
    h = harness()
    running(h, 3)  # steps 0..2
    h.prefix(h.step_time(1) + PERIOD_NS // 2 + 1)  # 1.5+ steps -> step 2
    t = running(h)
    assert (t.status.prefix_capture_step, t.status.staleness_steps) == (2, 1)


def test_out_of_order_prefixes_use_the_newest(harness):
    h = harness(max_staleness=10)
    running(h, 6)  # steps 0..5
    newest = h.prefix(h.step_time(4))
    h.prefix(h.step_time(2))  # older, arrives later in the same period: ignored
    t = running(h)  # step 6
    assert (t.status.prefix_frame_seq, t.status.staleness_steps) == (newest, 2)
    h.prefix(h.step_time(3))  # older than the one in use: ignored
    t = running(h)  # step 7
    assert (t.status.prefix_frame_seq, t.status.staleness_steps, t.status.state) == (newest, 3, RUNNING)
    assert t.status.rejected_prefixes == 0
    assert h.node.counters.ignored_old_prefixes == 2


def test_future_prefix_is_rejected_and_counted(harness):
    h = harness()
    running(h, 3)  # steps 0..2
    used = h.prefix(h.step_time(2))
    running(h)  # step 3
    h.prefix(h.step_time(6))  # 2 steps ahead of step 4
    t = running(h)
    assert t.status.rejected_prefixes == 1
    assert (t.status.prefix_frame_seq, t.status.staleness_steps, t.status.state) == (used, 2, RUNNING)


def test_future_tolerance_accepts_small_skew(harness):
    h = harness(future_tolerance=1)
    running(h, 2)  # steps 0, 1
    h.prefix(h.step_time(3))  # one step ahead of step 2
    t = running(h)
    assert (t.status.state, t.status.staleness_steps, t.status.rejected_prefixes) == (RUNNING, -1, 0)


def test_stale_prefix_holds_then_fresh_prefix_recovers(harness):
    h = harness(max_staleness=2)
    running(h)
    h.prefix(h.step_time(1))
    states = [running(h).status.state for _ in range(3)]  # staleness 0, 1, 2
    assert states == [RUNNING] * 3
    t = running(h)  # staleness 3 > 2
    assert t.status.state == HOLDING and "prefix stale: 3 steps > max_staleness 2" in t.status.reason
    assert_hold_at(t, Q0)
    h.prefix(h.step_time(5))
    t = running(h)
    assert (t.status.state, t.status.staleness_steps) == (RUNNING, 0)


def test_no_prefix_waits_without_publishing(harness):
    h = harness()
    t = running(h, 3)
    assert t.status.state == WAITING and t.status.reason == "no prefix received yet"
    assert h.jtc.messages == []


def test_action_only_mode_runs_without_prefix(harness):
    h = harness(allow_action_only=True)
    t = running(h, 2)
    assert t.status.state == RUNNING and "action-only" in t.status.reason
    assert t.status.cache_fill == 2 and len(t.trajectory.points) == 5  # the point in execution + 4 rows


def test_no_joint_state_ever_publishes_nothing(harness):
    h = harness(allow_action_only=True)
    for _ in range(3):
        t = h.tick()
    assert t.status.state == WAITING and "no /joint_states" in t.status.reason
    assert h.jtc.messages == []


@pytest.mark.parametrize("bad, reason", [
    ({"j1": 0.3, "j2": 0.1}, "joint_states lacks joints ['j3']"),
    ({"j1": float("nan"), "j2": 0.1, "j3": 0.0}, "NaN/inf position for ['j1']"),
    ({"j1": 0.3, "j2": float("inf"), "j3": 0.0}, "NaN/inf position for ['j2']"),
])
def test_bad_joint_state_holds_last_good_position_then_recovers(harness, bad, reason):
    h = harness(allow_action_only=True)
    running(h, 2)
    h.joint_state(bad)
    t = h.tick()
    assert t.status.state == FAULT and reason in t.status.reason
    assert_hold_at(t, Q0)
    t = running(h)
    assert (t.status.state, t.status.reason) == (RUNNING, "action-only (no prefix yet)")


def test_stale_joint_states_hold(harness):
    h = harness(allow_action_only=True, joint_state_timeout=0.12)  # 2.4 periods
    running(h)
    assert h.tick().status.state == RUNNING  # 1 period old
    assert h.tick().status.state == RUNNING  # 2 periods old
    t = h.tick()  # 3 periods old
    assert t.status.state == FAULT and "joint_states stale" in t.status.reason
    assert_hold_at(t, Q0)
    assert running(h).status.state == RUNNING


def test_first_joint_state_bad_publishes_nothing(harness):
    h = harness(allow_action_only=True)
    h.joint_state({"j1": 0.0})
    t = h.tick()
    assert t.status.state == FAULT and "publishing nothing" in t.status.reason
    assert t.trajectory is None


def test_joint_states_are_read_by_name(harness):
    h = harness(allow_action_only=True)
    h.joint_state({"gripper": 9.0, "j3": 0.2, "j1": -0.4, "j2": 0.3})
    assert h.tick().status.state == RUNNING
    h.joint_state({"j3": 0.2, "j2": 0.3})  # j1 missing: hold the last complete reading, by name
    t = h.tick()
    assert t.status.state == FAULT
    assert_hold_at(t, {"j1": -0.4, "j2": 0.3, "j3": 0.2})


@pytest.mark.parametrize("kwargs, reason", [
    (dict(model_id="other-backbone"), "prefix model_id 'other-backbone' != policy model_id 'test-backbone@v1'"),
    (dict(dim=PREFIX_DIM + 1), f"prefix dim {PREFIX_DIM + 1} != policy prefix_dim {PREFIX_DIM}"),
    (dict(tokens=5), "prefix token_count 5 not in [1, 4]"),
    (dict(data=np.full(2 * PREFIX_DIM, np.nan)), "prefix data contains NaN/inf"),
    (dict(data=np.zeros(3)), "prefix data has 3 values, header says 2 x 8 = 16"),
])
def test_bad_prefix_is_rejected_with_a_fault_until_a_good_one(harness, kwargs, reason):
    h = harness()
    running(h, 2)
    h.prefix(h.step_time(1))
    assert running(h).status.state == RUNNING
    h.prefix(h.step_time(2), **kwargs)
    t = running(h)
    assert (t.status.state, t.status.reason, t.status.rejected_prefixes) == (FAULT, reason, 1)
    assert_hold_at(t, Q0)
    assert running(h).status.state == FAULT  # stays until a usable prefix arrives
    h.prefix(h.step_time(5))
    t = running(h)
    assert (t.status.state, t.status.staleness_steps) == (RUNNING, 0)


def test_empty_model_id_accepts_any_prefix(harness):
    h = harness(policy=tiny_policy(model_id=""))
    running(h)
    h.prefix(h.step_time(1), model_id="whatever")
    assert running(h).status.state == RUNNING


def test_model_producing_nan_faults_and_holds(harness):
    import torch

    policy = tiny_policy()
    h = harness(policy=policy, allow_action_only=True)
    assert running(h).status.state == RUNNING
    with torch.no_grad():
        for p in policy.model.parameters():
            p.fill_(float("nan"))
    t = running(h)
    assert t.status.state == FAULT and "model output has 3 NaN/inf values" in t.status.reason
    assert_hold_at(t, Q0)
    assert policy.cache_fill == 1, "a NaN step must not enter the memory"


def test_trajectories_match_a_policy_driven_by_hand(harness):
    """End to end re-anchoring: the node must feed the policy exactly the steps the stamps say.

    A twin policy (same seed) is driven directly with the capture steps we expect; with wide
    limits the published positions must equal its outputs, in controller joint order, although
    the policy's joint order differs from the controller's.
    """
    policy_order = ["j3", "j1", "j2"]
    wide = dict(position_min=[-50.0] * 3, position_max=[50.0] * 3, max_velocity=[1e4] * 3, max_staleness=6)
    h = harness(policy=tiny_policy(joint_names=policy_order, seed=3), trajectory_timing="tick", **wide)
    twin = tiny_policy(joint_names=policy_order, seed=3)
    to_policy = [JOINTS.index(j) for j in policy_order]
    to_controller = [policy_order.index(j) for j in JOINTS]
    rng = np.random.default_rng(0)
    stamps = {2: (1, 0), 5: (4, PERIOD_NS // 3), 6: (3, 0), 9: (7, -PERIOD_NS // 3)}  # step: (capture, jitter)
    compared = 0
    for step in range(12):
        q = dict(zip(JOINTS, rng.uniform(-0.5, 0.5, 3)))
        if step in stamps:
            capture, jitter = stamps[step]
            seq = h.prefix(h.step_time(capture) + jitter)
            if step != 6:  # step 6 sends an older prefix: ignored
                twin.refresh_prefix(np.random.default_rng(seq).standard_normal((2, PREFIX_DIM)).astype(np.float32),
                                    capture)
        h.joint_state(q)
        t = h.tick()
        if step < 2:
            assert t.status.state == WAITING
            continue
        assert t.status.state == RUNNING, t.status.reason
        expected = twin.step(np.array([q[j] for j in JOINTS])[to_policy], step, 4)[:, to_controller]
        np.testing.assert_allclose(positions(t.trajectory), expected, rtol=1e-6, atol=1e-9)
        compared += 1
    assert compared == 10


def test_seamless_timing_keeps_the_point_in_execution(harness):
    """trajectory_timing 'seamless': stamped with the tick time; the first point is the previous
    trajectory's point at this tick + one period (same time, position, velocity), so the step's
    latency cannot change the motion; the policy's rows follow one period later. With nothing in
    execution (start, after a hold) the first point stands at the measured position."""
    wide = dict(position_min=[-50.0] * 3, position_max=[50.0] * 3, max_velocity=[1e4] * 3, max_staleness=20)
    h = harness(policy=tiny_policy(seed=3), **wide)
    twin = tiny_policy(seed=3)
    h.tick()
    rng = np.random.default_rng(1)
    prev = None
    for step in range(1, 8):
        if step == 1:
            seq = h.prefix(h.step_time(0))
            twin.refresh_prefix(np.random.default_rng(seq).standard_normal((2, PREFIX_DIM)).astype(np.float32), 0)
        q = dict(zip(JOINTS, rng.uniform(-0.5, 0.5, 3)))
        h.joint_state(q)
        t = h.tick()
        assert t.status.state == RUNNING, t.status.reason
        traj = t.trajectory
        stamp = traj.header.stamp.sec * 1_000_000_000 + traj.header.stamp.nanosec
        assert stamp == h.now_ns == h.step_time(step)
        times = [p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec for p in traj.points]
        assert times == [PERIOD_NS * (k + 1) for k in range(5)]  # the first point, then 4 rows
        expected = twin.step(np.array([q[j] for j in JOINTS]), t.status.step, 4)
        np.testing.assert_allclose(positions(traj)[1:], expected, rtol=1e-6, atol=1e-9)
        if prev is None:  # nothing in execution: stand at the measured position for one period
            assert list(traj.points[0].positions) == pytest.approx([q[j] for j in JOINTS])
            assert list(traj.points[0].velocities) == [0.0, 0.0, 0.0]
        else:
            assert list(traj.points[0].positions) == list(prev.points[1].positions)
            assert list(traj.points[0].velocities) == list(prev.points[1].velocities)
        prev = traj
    # a hold in between: nothing in execution afterwards, the plan starts standing at the measurement
    h.joint_state({"j1": math.nan, "j2": 0.0, "j3": 0.0})
    assert h.tick().status.state == FAULT
    q = {"j1": 0.2, "j2": 0.1, "j3": -0.1}
    h.joint_state(q)
    t = h.tick()
    assert t.status.state == RUNNING  # (the FAULT tick did not step the policy)
    expected = twin.step(np.array([q[j] for j in JOINTS]), t.status.step, 4)
    assert list(t.trajectory.points[0].positions) == pytest.approx([q[j] for j in JOINTS])
    np.testing.assert_allclose(positions(t.trajectory)[1:], expected, rtol=1e-6, atol=1e-9)


def test_reset_memory_service(harness):
    from arvla_msgs.srv import ResetMemory

    h = harness(max_staleness=20)
    running(h, 3)
    h.prefix(h.step_time(2))
    t = running(h, 3)  # steps 3..5
    assert (t.status.step, t.status.cache_fill, t.status.ticks) == (5, 3, 6)
    resp = h.call(h.reset_client, ResetMemory.Request(clear_prefix=False))
    assert resp.success and "prefix kept" in resp.message
    t = running(h)  # new episode: this tick is step 0, the kept prefix re-anchored 4 steps back
    assert (t.status.step, t.status.cache_fill, t.status.ticks, t.status.state) == (0, 1, 1, RUNNING)
    assert t.status.prefix_capture_step == -4 and t.status.staleness_steps == 4
    assert h.call(h.reset_client, ResetMemory.Request(clear_prefix=True)).success
    t = running(h)
    assert (t.status.step, t.status.state, t.status.staleness_steps) == (0, WAITING, -1)


def test_enable_service_disables_publishing_and_reenabling_starts_a_new_episode(harness):
    from std_srvs.srv import SetBool

    h = harness(allow_action_only=True)
    running(h, 3)
    n = len(h.jtc.messages)
    assert h.call(h.enable_client, SetBool.Request(data=False)).success
    for _ in range(3):
        t = running(h)
        assert (t.status.state, t.trajectory) == (DISABLED, None)
    assert len(h.jtc.messages) == n
    resp = h.call(h.enable_client, SetBool.Request(data=True))
    assert resp.success and "memory reset" in resp.message
    t = running(h)
    assert (t.status.state, t.status.step, t.status.cache_fill) == (RUNNING, 0, 1)
    assert t.trajectory is not None


def test_disabled_at_start(harness):
    h = harness(allow_action_only=True, enabled_at_start=False)
    t = running(h, 2)
    assert t.status.state == DISABLED and h.jtc.messages == []


def test_clock_jumping_back_resets_memory(harness):
    h = harness(max_staleness=20)
    running(h, 2)
    h.prefix(h.step_time(1))
    t = running(h, 6)
    assert (t.status.step, t.status.state, t.status.cache_fill) == (7, RUNNING, 6)
    # bag loop / sim reset: rcl re-arms a ROS-time timer one period after a backward jump
    h.set_clock_and_wait(T_START_NS - 10 * PERIOD_NS)
    t = h.tick(T_START_NS - 9 * PERIOD_NS)
    assert (t.status.step, t.status.state, t.status.ticks) == (0, WAITING, 1)
    assert t.status.cache_fill == 0 and t.status.staleness_steps == -1
    assert "no /joint_states" in t.status.reason
    # the old prefix's stamp now lies in the future of the restarted clock: it is not used
    h.prefix(h.now_ns)
    t = running(h)
    assert (t.status.step, t.status.state, t.status.staleness_steps) == (1, RUNNING, 1)


def test_diagnostics_carry_state_and_reason(harness):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    h = harness(allow_action_only=True)
    diags = []
    h.driver.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    h._wait(lambda: h.driver.count_publishers("/diagnostics") > 0, "diagnostics publisher")
    running(h)
    h.joint_state({"j1": 0.0})
    h.tick()
    h._wait(lambda: any(d.status[0].level == DiagnosticStatus.ERROR for d in diags), "an ERROR diagnostic")
    err = next(d.status[0] for d in diags if d.status[0].level == DiagnosticStatus.ERROR)
    values = {kv.key: kv.value for kv in err.values}
    assert values["state"] == "FAULT" and "lacks joints" in values["reason"]
    assert {"staleness_steps", "cache_fill", "step_latency_ms", "late_ticks", "dropped_steps"} <= set(values)
    assert err.hardware_id == "arm_controller"


def test_late_ticks_and_dropped_steps_are_counted(harness):
    h = harness(allow_action_only=True, joint_state_timeout=1.0)
    running(h, 2)  # steps 0, 1
    h.joint_state(Q0)
    t = h.tick(h.now_ns + 3 * PERIOD_NS)  # the timer fell behind by two periods
    assert (t.status.step, t.status.late_ticks, t.status.state) == (4, 1, RUNNING)
    assert h.node.counters.dropped_steps == 2


def test_randomised_inputs_never_break_jtc_rules_and_staleness_is_exact(harness):
    """Mixed good/bad joint states and prefixes at random delays; the fake JTC checks every message."""
    h = harness(max_staleness=3, future_tolerance=0, joint_state_timeout=10.0)
    rng = np.random.default_rng(7)
    capture = None
    for step in range(40):
        roll = rng.random()
        q = dict(zip(JOINTS, rng.uniform(-3, 3, 3)))  # often outside the limits
        if roll < 0.1:
            q["j2"] = float("nan")
        h.joint_state(q)
        if rng.random() < 0.4:
            delay = int(rng.integers(-1, 6))
            h.prefix(h.step_time(step - delay))
            if delay >= 0 and (capture is None or step - delay > capture):
                capture = step - delay
        t = h.tick()
        assert t.status.step == step
        if capture is not None:
            assert t.status.staleness_steps == step - capture
    assert len(h.jtc.messages) > 10


def test_configuration_errors_name_the_key(ros_context):
    from arvla_base.config import ConfigError
    from rclpy.parameter import Parameter

    from arvla_action_expert.node import ActionExpertNode
    from expert_harness import base_params

    def build(policy=None, **params):
        overrides = [Parameter(k, value=v) for k, v in base_params(**params).items()]
        return ActionExpertNode(policy=policy, context=ros_context, parameter_overrides=overrides)

    with pytest.raises(ConfigError, match="checkpoint: no checkpoint given"):
        build()
    with pytest.raises(ConfigError, match="control_rate: 50 Hz, but the policy was trained at 20 Hz"):
        build(tiny_policy(), control_rate=50.0)
    with pytest.raises(ConfigError, match="joints: controller joints .* do not match"):
        build(tiny_policy(joint_names=["a", "b", "c"]))
    with pytest.raises(ConfigError, match="lookahead_steps: 40 > the policy's limit"):
        build(tiny_policy(), lookahead_steps=40)
    with pytest.raises(ConfigError, match="max_velocity: must have one value per joint"):
        build(tiny_policy(), max_velocity=[1.0])
    with pytest.raises(ConfigError, match=r"ensemble_steps: ensemble_steps must be in \[1, predict_steps=1\]"):
        build(tiny_policy(), ensemble_steps=2)
    node = build(tiny_policy(), ensemble_m=0.25)   # a declared parameter, handed to the policy
    try:
        assert node.policy.ensemble_m == 0.25
    finally:
        node.destroy_node()
    with pytest.raises(ConfigError, match="joints: 2 controller joints, but the policy has state_dim 3"):
        build(tiny_policy(), joints=["j1", "j2"], position_min=[-1.0, -1.0], position_max=[1.0, 1.0],
              max_velocity=[1.0, 1.0])


def test_node_loads_a_checkpoint_and_a_bad_one_fails_clearly(harness, tmp_path, ros_context):
    from rclpy.parameter import Parameter

    from arvla_action_expert.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
    from arvla_action_expert.node import ActionExpertNode
    from expert_harness import base_params

    src = tiny_policy(joint_names=JOINTS)
    save_checkpoint(tmp_path / "ck", src.model, state_norm=src.state_norm, target_norm=src.target_norm,
                    meta=CheckpointMeta(model_id=MODEL_ID, control_rate_hz=20.0, joint_names=JOINTS, stage=2))
    with pytest.raises(CheckpointError):
        ActionExpertNode(context=ros_context, parameter_overrides=[
            Parameter(k, value=v) for k, v in base_params(checkpoint=str(tmp_path / "missing")).items()])
    h = harness(policy=None, checkpoint=str(tmp_path / "ck"))  # the harness passes policy=None through
    assert h.node.policy.model_id == MODEL_ID and h.node.policy is not h.policy
    running(h)
    h.prefix(h.step_time(1))
    assert running(h).status.state == RUNNING


def test_main_exits_nonzero_when_configuration_fails(tmp_path):
    from arvla_action_expert.node import main

    rc = main(["--ros-args", "-p", f"checkpoint:={tmp_path / 'nope'}", "-p", "joints:=[a,b,c]",
               "-p", "position_min:=[-1.0,-1.0,-1.0]", "-p", "position_max:=[1.0,1.0,1.0]",
               "-p", "max_velocity:=[1.0,1.0,1.0]"])
    assert rc == 1


def test_shipped_params_file_configures_the_node(tmp_path, ros_context, repo_root):
    """config/action_expert.yaml through rclpy's own --params-file parser (node name, types)."""
    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.node import ActionExpertNode
    from arvla_action_expert.policy import ExpertPolicy

    panda = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]  # the sim's arm_controller
    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=8, max_prefix_tokens=4, n_embd=16, n_layer=1,
                       n_head=2, ffn=32, window=8, head="regression")
    src = ExpertPolicy.build_untrained(cfg)
    save_checkpoint(tmp_path / "ck", src.model, state_norm=src.state_norm, target_norm=src.target_norm,
                    meta=CheckpointMeta(control_rate_hz=20.0, joint_names=list(reversed(panda))))
    node = ActionExpertNode(context=ros_context, cli_args=[
        "--ros-args", "--params-file", str(repo_root / "config" / "action_expert.yaml"),
        "-p", f"checkpoint:={tmp_path / 'ck'}"])
    try:
        assert node.joints == panda and node.config.lookahead_steps == 3
        assert node.limits.upper[3] == pytest.approx(-0.0698) and node.limits.max_velocity[6] == pytest.approx(2.61)
        desc = node.describe_parameter("joint_state_timeout")
        assert "stale" in desc.description and desc.read_only
    finally:
        node.destroy_node()

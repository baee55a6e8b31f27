"""Lock-step mode of the sim node: the closed loop through the ROS graph no longer depends on load.

- config: the lock-step parameters are checked, errors name the key;
- protocol, against a probe standing in for the expert and perception: the sim does not advance
  past a boundary without the expert's status for it, holds a camera frame for
  ``lockstep_perception_steps`` periods and waits for its prefix, advances after
  ``lockstep_timeout_s`` with a counted warning, and holds while ``set_lockstep_stop`` says so;
- determinism: the same tiny expert on the same seeds through the real graph (sim + perception +
  expert nodes, ``RolloutGraph``) twice, the second time with random delays in the expert's step
  and the CPU busy: identical episodes.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from arvla_base.config import ConfigError, from_dict
from arvla_base.rosutil import ns_to_stamp, spin_until, stamp_to_ns
from arvla_sim.config import SimNodeConfig

P = 50_000_000   # one period at the default lockstep_control_rate_hz (20 Hz), ns
LOCKSTEP = {"lockstep": True, "joint_states_rate_hz": 20.0}


# ------------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("overrides, key", [
    ({"lockstep": True}, "joint_states_rate_hz"),                    # 100 Hz: 5 joint states per handshake
    ({**LOCKSTEP, "lockstep_control_rate_hz": 30.0}, "lockstep_control_rate_hz"),   # not on the physics grid
    ({**LOCKSTEP, "lockstep_control_rate_hz": 200.0}, "lockstep_control_rate_hz"),  # faster than the controller
    ({**LOCKSTEP, "camera_rate_hz": 25.0}, "camera_rate_hz"),        # frames between handshakes
    ({"lockstep_perception_steps": -1}, "lockstep_perception_steps"),
    ({"lockstep_timeout_s": 0.0}, "lockstep_timeout_s"),
    ({"lockstep_control_rate_hz": -20.0}, "lockstep_control_rate_hz"),
])
def test_bad_lockstep_parameters_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(SimNodeConfig, overrides)


def test_lockstep_parameters_that_fit():
    cfg = from_dict(SimNodeConfig, {**LOCKSTEP, "camera_rate_hz": 10.0, "lockstep_perception_steps": 0})
    assert cfg.lockstep_period_ns == P
    from_dict(SimNodeConfig, {**LOCKSTEP, "joint_states_rate_hz": 10.0, "lockstep_control_rate_hz": 10.0})
    # off, the lock-step parameters do not constrain the others
    from_dict(SimNodeConfig, {"lockstep_control_rate_hz": 30.0, "joint_states_rate_hz": 100.0})


# ------------------------------------------------------------------------------- the protocol

def test_the_sim_waits_for_each_handshake_and_times_out_visibly(ros_context, executor, capfd):
    from arvla_msgs.msg import ExpertStatus, VLPrefix
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState

    from arvla_sim.node import SimNode

    sim = SimNode(context=ros_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in {**LOCKSTEP, "real_time_factor": 0.0, "camera_rate_hz": 10.0,
                                           "image_height": 32, "image_width": 32,
                                           "lockstep_perception_steps": 1, "lockstep_timeout_s": 1.0}.items()])
    probe = Node("probe", context=ros_context)
    clocks: list[int] = []
    joints: list[int] = []
    images: list[int] = []
    probe.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)), 100)
    probe.create_subscription(JointState, "/joint_states", lambda m: joints.append(stamp_to_ns(m.header.stamp)),
                              qos_profile_sensor_data)
    probe.create_subscription(Image, "/camera/image_raw", lambda m: images.append(stamp_to_ns(m.header.stamp)),
                              qos_profile_sensor_data)
    status_pub = probe.create_publisher(ExpertStatus, "/arvla/expert_status", 10)
    prefix_pub = probe.create_publisher(VLPrefix, "/arvla/vl_prefix", 10)
    executor.add_node(sim)
    executor.add_node(probe)

    def status(ns: int) -> None:
        msg = ExpertStatus()
        ns_to_stamp(ns, msg.header.stamp)
        status_pub.publish(msg)

    def idle(seconds: float) -> None:
        spin_until(executor, lambda: False, seconds)

    # 1. The first boundary (the episode starts on the expert's grid): joint state + clock, then
    #    nothing without the expert's status. The frame captured there is held (latency 1 step).
    assert spin_until(executor, lambda: clocks == [P] and joints == [P], 10.0), (clocks, joints)
    idle(0.4)
    assert clocks == [P] and sim.now_ns == P and images == []
    # 2. The status of the tick at P: one period on; the frame captured at P goes to perception
    #    now, and the clock stays at P until its prefix is there.
    status(P)
    assert spin_until(executor, lambda: images == [P], 10.0), images
    idle(0.4)
    assert clocks == [P] and sim.now_ns == 2 * P and sim.lockstep_timeouts == 0
    prefix = VLPrefix()
    ns_to_stamp(P, prefix.header.stamp)
    prefix_pub.publish(prefix)
    assert spin_until(executor, lambda: clocks == [P, 2 * P] and joints == [P, 2 * P], 10.0), (clocks, joints)
    # 3. Held: even with the status there, the sim stays until let go.
    sim.set_lockstep_stop(lambda: True)
    status(2 * P)
    assert spin_until(executor, sim.lockstep_held.is_set, 10.0)
    idle(0.3)
    assert clocks == [P, 2 * P] and sim.now_ns == 2 * P
    sim.set_lockstep_stop(None)
    assert spin_until(executor, lambda: clocks[-1] == 3 * P, 10.0), clocks
    assert not sim.lockstep_held.is_set()
    # 4. No status for 3P, then no prefix for the frame captured at 3P (handed over at 4P): each
    #    wait ends after lockstep_timeout_s (1 s wall), counted and logged.
    t0 = time.monotonic()
    assert spin_until(executor, lambda: clocks[-1] == 4 * P, 10.0), clocks
    assert time.monotonic() - t0 > 1.6
    assert sim.lockstep_timeouts == 2 and images == [P, 3 * P]
    assert clocks == [P, 2 * P, 3 * P, 4 * P]            # /clock only on the expert's grid
    err = capfd.readouterr().err
    assert "lock-step: no ExpertStatus stamped 0.150 s" in err and "lock-step: no VLPrefix stamped 0.150 s" in err
    # the warning says whether discovery had matched the topic (a lost message) or nobody answered
    assert re.search(r"\d+ publisher\(s\) of /\S+ matched, \d+ subscription\(s\) of /clock", err), err


# ------------------------------------------------------------------------------- determinism

SIM = {"lockstep": True, "real_time_factor": 0.0, "image_height": 64, "image_width": 64,
       "camera_rate_hz": 10.0, "lockstep_perception_steps": 2}
PERCEPTION = {"image_size": 64, "text_model_path": "none", "token_grid": [1, 1]}   # efficientnet head, 1 token
SEEDS = (5, 6)
MAX_SECONDS = 2.0


def tiny_policy():
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_sim.robot import JOINT_NAMES

    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=4, n_embd=32,
                       n_layer=1, n_head=2, ffn=64, window=16, n_bins=8, delta_actions=True)
    return ExpertPolicy.build_untrained(cfg, seed=0, joint_names=JOINT_NAMES)


def slow_steps(policy, seed: int):
    """The policy, with a random 0-30 ms wait before each step (the step itself unchanged)."""
    step, rng = policy.step, random.Random(seed)

    def slow(*args, **kwargs):
        time.sleep(rng.uniform(0.0, 0.03))
        return step(*args, **kwargs)

    policy.step = slow
    return policy


def _hog_the_gil(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def _episodes(policy, *, loaded: bool):
    """Both seeds through one graph (the second episode runs after the resets of the first)."""
    from arvla_eval.rollout import RolloutGraph, ar_expert_factory, run_episodes

    busy: list[subprocess.Popen] = []
    stop = threading.Event()
    if loaded:   # another process on the CPU, and a thread fighting our executors for the GIL
        busy.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        threading.Thread(target=_hog_the_gil, args=(stop,), daemon=True).start()
    try:
        t0 = time.monotonic()
        with RolloutGraph(task="cued_reach", expert_factory=ar_expert_factory(policy, {"max_staleness": 30}),
                          sim_overrides=SIM, perception_overrides=PERCEPTION, log_level="warn") as graph:
            records = run_episodes(policy, task="cued_reach", seeds=SEEDS, max_seconds=MAX_SECONDS,
                                   graph=graph, progress=False)
            assert graph.sim.lockstep_timeouts == 0
        return records, time.monotonic() - t0
    finally:
        stop.set()
        for proc in busy:
            proc.kill()
            proc.wait()


def test_same_policy_same_seeds_same_episodes_whatever_the_load():
    quiet, _ = _episodes(tiny_policy(), loaded=False)
    loaded, _ = _episodes(slow_steps(tiny_policy(), seed=1), loaded=True)
    n = int(round(MAX_SECONDS * 20)) + 1          # ticks 0, 0.05, ..., 2.0 s: the sim stops the episode
    for a, b in zip(quiet, loaded):
        assert a.seed == b.seed and a.n_ticks == b.n_ticks == n
        np.testing.assert_array_equal(a.times, b.times)
        assert a.times[-1] == pytest.approx(MAX_SECONDS)
        # the perception latency is simulated in steps: the frame captured at step 0 is first used
        # at step 2, then a frame every 2 steps (10 Hz camera), so staleness 2, 3, 2, 3, ...
        np.testing.assert_array_equal(a.staleness_steps, b.staleness_steps)
        assert list(a.staleness_steps[:6]) == [-1, -1, 2, 3, 2, 3]
        assert a.joint_positions.shape == b.joint_positions.shape == (n, 8)   # one per handshake
        np.testing.assert_array_equal(a.joint_times, b.joint_times)
        assert np.abs(a.joint_positions - b.joint_positions).max() <= 1e-9
        assert np.abs(a.positions - b.positions).max() <= 1e-9
        assert np.abs(a.commands - b.commands).max() <= 1e-9
        assert np.ptp(a.joint_positions, axis=0).max() > 0.05, "the expert should have moved the arm"
    # the two seeds differ (the comparison above is not of two constant trajectories)
    assert np.abs(quiet[0].joint_positions - quiet[1].joint_positions).max() > 1e-3

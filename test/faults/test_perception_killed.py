"""The perception process dies mid-run (SIGKILL), then is restarted.

Real OS process: ``python -m arvla_perception.node --ros-args --params-file config/perception.yaml``
(smaller images and one thread, to share the CPU). The expert runs in-process on the wall clock;
this test is the camera (images at 10 Hz) and the robot (joint states at 50 Hz). After the kill
the expert must hold by the first tick whose staleness exceeds ``max_staleness`` (never a
RUNNING tick beyond it), and run again once the restarted perception publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
from arvla_msgs.msg import ExpertStatus

from arvla_base.rosutil import spin_until
from faultlib import image_msg, joint_state_msg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_STALENESS = 16  # steps at 20 Hz = 0.8 s: above the prefix period + latency on a loaded CPU
GOOD = [0.1, -0.2, 0.05]
JOINTS = ["j1", "j2", "j3"]


def _perception(log_path: Any) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "arvla_perception.node", "--ros-args", "--params-file", "config/perception.yaml",
         "-p", "image_size:=64", "-p", "num_threads:=1", "-p", "max_rate_hz:=10.0"],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _policy() -> Any:
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy

    cfg = ExpertConfig(state_dim=3, action_dim=3, prefix_dim=1280, max_prefix_tokens=8, n_embd=16,
                       n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    return ExpertPolicy.build_untrained(cfg, joint_names=JOINTS)  # model_id "" accepts any backbone


def test_perception_killed_expert_holds_then_recovers_after_restart(expert_rig, executor, ledger, tmp_path):
    from sensor_msgs.msg import Image
    from rclpy.qos import qos_profile_sensor_data

    log = tmp_path / "perception.log"
    proc = _perception(log)  # starts loading while the expert is set up
    try:
        h, mon = expert_rig(policy=_policy(), use_sim_time=False, max_staleness=MAX_STALENESS,
                            joint_state_timeout=0.5)
        mon.start = np.array(GOOD)
        camera = h.driver.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 255, 48 * 64 * 3, dtype=np.uint8).tobytes()
        h.driver.create_timer(0.02, lambda: h.js_pub.publish(joint_state_msg(JOINTS, GOOD, time.time_ns())))
        h.driver.create_timer(0.1, lambda: camera.publish(image_msg(48, 64, "rgb8", 192, pixels, time.time_ns())))

        def running() -> bool:
            assert proc.poll() is None, "perception died on its own:\n" + log.read_text()[-2000:]
            return bool(h.statuses) and h.statuses[-1].state == ExpertStatus.STATE_RUNNING

        assert spin_until(executor, running, 90.0), "never RUNNING:\n" + log.read_text()[-2000:]
        spin_until(executor, lambda: False, 1.0)  # a second of steady running

        # -- kill -9 mid-run
        n_kill = len(h.statuses)
        n_traj = len(mon.messages)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        ledger.fault("perception_process_sigkill")
        holding = lambda: any(s.state == ExpertStatus.STATE_HOLDING for s in h.statuses[n_kill:])  # noqa: E731
        assert spin_until(executor, holding, 10.0), [s.reason for s in h.statuses[-3:]]
        spin_until(executor, lambda: False, 0.5)
        after = h.statuses[n_kill:]
        over = [s for s in after if s.staleness_steps > MAX_STALENESS]
        assert over, "staleness never exceeded max_staleness after the kill"
        assert all(s.state == ExpertStatus.STATE_HOLDING for s in over), \
            [(s.staleness_steps, s.state, s.reason) for s in over if s.state != ExpertStatus.STATE_HOLDING]
        first = over[0]
        assert "prefix stale" in first.reason and f"> max_staleness {MAX_STALENESS}" in first.reason
        # within one tick: the tick before the first HOLDING one was still within max_staleness
        i = after.index(first)
        assert i == 0 or after[i - 1].staleness_steps <= MAX_STALENESS
        # the trajectories after the hold began are holds (one in-flight RUNNING one at most)
        t_hold = len(mon.messages)
        spin_until(executor, lambda: False, 0.5)
        moving = [m for m in mon.messages[t_hold:] if not mon.is_hold(m)]
        assert not moving, f"{len(moving)} non-hold trajectories while holding"
        assert len(mon.messages) > n_traj, "the expert stopped publishing holds"

        # -- restart perception: prefixes return, the expert runs again
        proc = _perception(log)
        ledger.fault("perception_process_restart")
        n_restart = len(h.statuses)
        assert spin_until(executor, lambda: running() and len(h.statuses) > n_restart, 90.0), \
            "not RUNNING after the restart:\n" + log.read_text()[-2000:]
        spin_until(executor, lambda: False, 0.5)
        recovered = [s for s in h.statuses[n_restart:] if s.state == ExpertStatus.STATE_RUNNING]
        assert recovered and all(s.staleness_steps <= MAX_STALENESS for s in recovered)
        assert mon.violations == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

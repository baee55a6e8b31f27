"""`arvla bringup`: the full launch graph (sim + perception + expert) in one process, from the launch file."""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest
from rclpy.node import Node

from arvla.bringup import NodeThreads, parse_launch_args, start_nodes
from arvla.launch_graph import parse_launch_file

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_full_graph_with_embedded_sim_runs_in_process(ros_context, panda_checkpoint):
    from trajectory_msgs.msg import JointTrajectory

    from arvla_msgs.msg import ExpertStatus, VLPrefix

    graph = parse_launch_file(ROOT / "launch" / "bringup.launch.py")
    values = parse_launch_args(graph, [f"checkpoint:={panda_checkpoint}", "with_sim:=true",
                                       "use_sim_time:=true"])
    nodes = start_nodes(graph, values, context=ros_context)
    names = sorted(n.get_name() for n in nodes)
    assert names == ["arvla_action_expert", "arvla_perception", "arvla_sim"]
    expert = next(n for n in nodes if n.get_name() == "arvla_action_expert")
    assert expert.get_parameter("use_sim_time").value is True
    assert str(expert.get_parameter("checkpoint").value) == str(panda_checkpoint)

    probe = Node("bringup_probe", context=ros_context)
    statuses: list[ExpertStatus] = []
    prefixes: list[VLPrefix] = []
    trajs: list[JointTrajectory] = []
    probe.create_subscription(ExpertStatus, "/arvla/expert_status", statuses.append, 10)
    probe.create_subscription(VLPrefix, "/arvla/vl_prefix", prefixes.append, 10)
    probe.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", trajs.append, 10)
    spinner = NodeThreads([*nodes, probe], context=ros_context).start()  # as `arvla bringup` spins
    try:
        deadline = time.monotonic() + 120.0
        while not (len(prefixes) >= 2 and len(trajs) >= 5
                   and any(s.state == ExpertStatus.STATE_RUNNING for s in statuses)):
            assert time.monotonic() < deadline, (
                f"prefixes {len(prefixes)}, trajectories {len(trajs)}, states {sorted({s.state for s in statuses})}")
            time.sleep(0.05)
        # the expert runs on the sim's clock: its status stamps are sim time, prefixes are re-anchored on it
        running = [s for s in list(statuses) if s.state == ExpertStatus.STATE_RUNNING]
        assert all(0 <= s.staleness_steps <= expert.config.max_staleness for s in running)
    finally:
        spinner.stop()
        for n in [*nodes, probe]:
            n.destroy_node()


@pytest.mark.slow
def test_demo_checkpoint_runs_and_moves_the_arm_with_default_arguments(ros_context, demo_style_checkpoint,
                                                                       demo_perception, caplog):
    """Issue #19: `arvla bringup checkpoint:=<demo expert> with_sim:=true use_sim_time:=true`.

    The demo's expert is trained on block-10 prefixes (5 x 384). Before, bring-up started the
    default perception (hidden_layer -1, 5 x 1280) and the expert sat in FAULT ("prefix model_id
    ... != policy model_id") for the whole run. Now the perception settings recorded in the
    checkpoint are applied: perception makes the checkpoint's model_id, the expert reaches
    RUNNING and the arm moves."""
    import logging

    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    from arvla_msgs.msg import ExpertStatus

    settings, model_id, _ = demo_perception
    assert settings["hidden_layer"] == 10, "the demo trains on non-default perception settings"
    graph = parse_launch_file(ROOT / "launch" / "bringup.launch.py")
    values = parse_launch_args(graph, [f"checkpoint:={demo_style_checkpoint}", "with_sim:=true",
                                       "use_sim_time:=true"])
    with caplog.at_level(logging.INFO, logger="arvla.bringup"):
        nodes = start_nodes(graph, values, context=ros_context)
    assert f"perception settings from checkpoint {demo_style_checkpoint}: hidden_layer 10" in caplog.text
    by_name = {n.get_name(): n for n in nodes}
    assert by_name["arvla_perception"].backbone.model_id == model_id
    assert by_name["arvla_action_expert"].policy.model_id == model_id

    probe = Node("bringup_probe", context=ros_context)
    statuses: list[ExpertStatus] = []
    positions: list[list[float]] = []
    probe.create_subscription(ExpertStatus, "/arvla/expert_status", statuses.append, 10)
    probe.create_subscription(JointState, "/joint_states", lambda m: positions.append(list(m.position)),
                             qos_profile_sensor_data)
    spinner = NodeThreads([*nodes, probe], context=ros_context).start()
    try:
        deadline = time.monotonic() + 45.0
        moved = 0.0
        while True:
            running = [i for i, s in enumerate(list(statuses)) if s.state == ExpertStatus.STATE_RUNNING]
            if running and len(positions) >= 2:
                moved = max(abs(a - b) for a, b in zip(positions[0], positions[-1]))
                if moved > 0.02:
                    break
            faults = sorted({s.reason for s in list(statuses) if s.state == ExpertStatus.STATE_FAULT})
            assert time.monotonic() < deadline, (
                f"states {sorted({s.state for s in statuses})}, faults {faults[:3]}, "
                f"{len(positions)} joint states, moved {moved:.4f} rad")
            time.sleep(0.05)
        assert not any(s.state == ExpertStatus.STATE_FAULT for s in list(statuses))
    finally:
        spinner.stop()
        for n in [*nodes, probe]:
            n.destroy_node()


def test_bringup_command_reports_bad_arguments():
    proc = subprocess.run(["arvla", "bringup", "with_sim:=true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "'checkpoint' is required" in proc.stderr
    proc = subprocess.run(["arvla", "bringup", "bringup.launch.py", "checkpoint:=/nonexistent/expert"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "cannot start the graph" in proc.stderr


@pytest.mark.slow
def test_bringup_command_runs_and_stops_cleanly(panda_checkpoint):
    proc = subprocess.run(["arvla", "bringup", "bringup.launch.py", f"checkpoint:={panda_checkpoint}",
                           "with_sim:=true", "use_sim_time:=true", "--duration", "8"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "3 nodes from bringup.launch.py running in one process" in proc.stdout
    assert "perception settings from" in proc.stdout  # which perception parameters, and why
    assert "Traceback" not in proc.stderr
    # name:=value launch arguments are not rcl remap rules (rcl warned once per argument)
    assert "This syntax is deprecated" not in proc.stderr, proc.stderr[-2000:]

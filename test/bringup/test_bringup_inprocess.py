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
    assert "Traceback" not in proc.stderr

"""`arvla robot-config`: the node's resolution as a dry run, as a table or JSON; refusals exit 1."""

from __future__ import annotations

import json

import pytest

import robot_files as rf
from arvla.cli import main as arvla


def _ur_args(files, *extra):
    return ["robot-config", "--controllers-yaml", str(files["controllers"]), "--controller",
            "scaled_joint_trajectory_controller", "--joint-limits-yaml", str(files["joint_limits"]), *extra]


def test_table_shows_joints_limits_and_sources(tmp_path, capsys):
    files = rf.ur_files(tmp_path)
    assert arvla(_ur_args(files, "--urdf", str(files["urdf"]), "--param", "tf_prefix=ur_",
                          "--param", "velocity_scale=0.5")) == 0
    out = capsys.readouterr().out
    assert "ur_controllers/ScaledJointTrajectoryController" in out
    assert "velocity limits x 0.5 (parameter velocity_scale)" in out
    wrist = next(line for line in out.splitlines() if line.startswith("ur_wrist_3_joint"))
    assert wrist.split()[1:4] == ["continuous", "URDF", "continuous"] and "joint_limits.yaml" in wrist
    elbow = next(line for line in out.splitlines() if line.startswith("ur_elbow_joint"))
    assert "[-6.28319, 6.28319]" in elbow and " 1.5 " in elbow and " 3 " in elbow


def test_json_for_a_panda_with_its_hand_on_a_second_trajectory_controller(tmp_path, capsys):
    files = rf.panda_files(tmp_path, hand="joint_trajectory")
    assert arvla(["robot-config", "--controllers-yaml", str(files["controllers"]), "--controller",
                  "panda_arm_controller", "--joint-limits-yaml", str(files["joint_limits"]), "--urdf",
                  str(files["urdf"]), "--param", "gripper_controller=panda_hand_controller", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] and d["controller"]["joints"] == rf.PANDA_ARM
    assert d["state_joints"] == rf.PANDA_ARM + [rf.FINGER]
    assert d["gripper"]["command"] == "joint_trajectory" and d["gripper"]["followers"] == [[rf.FINGER2, 1.0, 0.0]]
    j1 = d["joints"]["panda_joint1"]
    assert j1["sources"]["max_velocity"] == "joint_limits.yaml" and j1["max_velocity"] == pytest.approx(0.2175)
    assert d["velocity_scale"] == {"value": 0.1, "source": "joint_limits.yaml default_velocity_scaling_factor"}


@pytest.mark.parametrize("extra, reason", [
    ([], "left to the URDF and none is given"),  # the node would wait for the topic
    (["--urdf", "URDF"], "is parameter tf_prefix 'ur_' missing"),
    (["--urdf", "URDF", "--param", "tf_prefix=ur_", "--param", "controller_name=forward_position_controller"],
     "JointGroupPositionController"),
    (["--urdf", "URDF", "--param", "tf_prefix=ur_", "--param", "velocity_scale=2"], "velocity_scale: must be in"),
    (["--param", "no_such_parameter=1"], "unknown config key"),
])
def test_anything_the_node_would_refuse_exits_1_with_the_reason(tmp_path, capsys, extra, reason):
    files = rf.ur_files(tmp_path)
    extra = [str(files["urdf"]) if a == "URDF" else a for a in extra]
    assert arvla(_ur_args(files, *extra)) == 1
    err = capsys.readouterr().err
    assert "the node would refuse" in err and reason in err


def test_unresolved_substitution_names_the_key(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("arm_controller:\n  ros__parameters:\n    joints: [$(var robot_ns)j1]\n")
    assert arvla(["robot-config", "--controllers-yaml", str(f), "--controller", "arm_controller", "--json",
                  "--param", "max_velocity=[1]", "--param", "position_min=[-1]", "--param", "position_max=[1]"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert not d["ok"] and "arm_controller.ros__parameters.joints[0]" in d["error"] and "robot_ns" in d["error"]


def test_reads_the_robot_description_topic_like_the_node(tmp_path, capsys, ros_context):
    from rclpy.node import Node
    from std_msgs.msg import String

    from arvla_action_expert.node import robot_description_qos

    files = rf.ur_files(tmp_path)
    publisher = Node("robot_state_publisher_stand_in", context=ros_context)
    pub = publisher.create_publisher(String, "/cli_test/robot_description", robot_description_qos())
    pub.publish(String(data=rf.ur_urdf()))  # transient local: a late subscriber still gets it
    try:
        assert arvla(_ur_args(files, "--robot-description-topic", "/cli_test/robot_description", "--param",
                              "tf_prefix=ur_", "--timeout", "10", "--json")) == 0
    finally:
        publisher.destroy_node()
    d = json.loads(capsys.readouterr().out)
    assert d["urdf"] == "topic /cli_test/robot_description"
    assert d["joints"]["ur_wrist_3_joint"]["continuous"] is True


@pytest.mark.parametrize("example, setup", [("ur_action_expert.yaml", "ur"), ("panda_action_expert.yaml", "panda")])
def test_the_example_params_files_resolve_on_their_robot(repo_root, tmp_path, capsys, example, setup):
    files = rf.ur_files(tmp_path) if setup == "ur" else rf.panda_files(tmp_path, hand="joint_trajectory")
    argv = ["robot-config", "--params-file", str(repo_root / "config" / "examples" / example),
            "--controllers-yaml", str(files["controllers"]), "--joint-limits-yaml", str(files["joint_limits"]),
            "--urdf", str(files["urdf"]), "--json"]
    if setup == "ur":
        argv += ["--param", "tf_prefix:=ur_"]
    else:  # the GripperActionController needs control_msgs; its JTC variant runs everywhere
        argv += ["--param", "gripper_command=joint_trajectory"]
    assert arvla(argv) == 0, capsys.readouterr().err
    d = json.loads(capsys.readouterr().out)
    assert d["controller"]["joints"] == (rf.UR_JOINTS if setup == "ur" else rf.PANDA_ARM)

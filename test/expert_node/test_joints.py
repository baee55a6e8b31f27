"""joints.py: joint states by name, controller joint lists and limit files."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_action_expert.joints import (JointError, JointLimits, controller_joints_from_yaml,
                                        limits_from_joint_limits_yaml, permutation, read_joints,
                                        resolve_limits)


def test_read_joints_is_by_name_and_ignores_extra_joints():
    r = read_joints(["finger", "j3", "j1", "j2"], [0.04, 3.0, 1.0, 2.0], ["j1", "j2", "j3"])
    assert r.ok and r.problem is None
    np.testing.assert_array_equal(r.positions, [1.0, 2.0, 3.0])


def test_read_joints_reports_missing_and_nonfinite_by_name():
    r = read_joints(["j1", "j2", "j3"], [np.nan, 2.0], ["j1", "j2", "j3", "j4"])
    assert not r.ok
    assert r.missing == ("j3", "j4")  # j3 has a name but no position
    assert r.nonfinite == ("j1",)
    assert "lacks joints ['j3', 'j4']" in r.problem and "NaN/inf position for ['j1']" in r.problem
    assert np.isnan(r.positions[0]) and r.positions[1] == 2.0


def test_read_joints_inf_counts_as_nonfinite():
    assert read_joints(["a"], [np.inf], ["a"]).nonfinite == ("a",)


def test_permutation_maps_between_orders():
    p = permutation(["a", "b", "c"], ["c", "a", "b"])
    assert [["a", "b", "c"][i] for i in p] == ["c", "a", "b"]
    with pytest.raises(JointError, match="differ"):
        permutation(["a", "b"], ["a", "x"])


def test_controller_joints_from_ros2_controllers_yaml(tmp_path):
    f = tmp_path / "ros2_controllers.yaml"
    f.write_text("""
controller_manager:
  ros__parameters:
    update_rate: 100
    arm_controller: {type: joint_trajectory_controller/JointTrajectoryController}
/**/arm_controller:
  ros__parameters:
    joints: [j1, j2]
    command_interfaces: [position]
gripper_controller:
  ros__parameters:
    joints: [f]
""")
    assert controller_joints_from_yaml(f, "arm_controller") == ["j1", "j2"]
    assert controller_joints_from_yaml(f, "gripper_controller") == ["f"]
    with pytest.raises(JointError, match="no controller 'other'"):
        controller_joints_from_yaml(f, "other")
    with pytest.raises(JointError, match="ros__parameters is missing"):
        controller_joints_from_yaml(_write(tmp_path / "b.yaml", "arm_controller: {joints: [a]}"), "arm_controller")
    with pytest.raises(JointError, match="joints must be a non-empty list"):
        controller_joints_from_yaml(_write(tmp_path / "c.yaml", "arm_controller: {ros__parameters: {joints: []}}"),
                                    "arm_controller")
    with pytest.raises(JointError, match="not found"):
        controller_joints_from_yaml(tmp_path / "missing.yaml", "arm_controller")


def _write(path, text):
    path.write_text(text)
    return path


def test_joint_limits_yaml_gives_only_what_it_has(tmp_path):
    f = _write(tmp_path / "joint_limits.yaml", """
default_velocity_scaling_factor: 0.1
joint_limits:
  j1: {has_velocity_limits: true, max_velocity: 2.0, has_acceleration_limits: false, max_acceleration: 0.0}
  j2: {has_position_limits: true, min_position: -1, max_position: 1.5, has_velocity_limits: false, max_velocity: 9}
""")
    assert limits_from_joint_limits_yaml(f, ["j1", "j2", "j3"]) == {
        "j1": {"max_velocity": 2.0}, "j2": {"lower": -1.0, "upper": 1.5}}
    bad = _write(tmp_path / "bad.yaml", "joint_limits: {j1: {has_velocity_limits: true}}")
    with pytest.raises(JointError, match="joint_limits.j1.has_velocity_limits is true but max_velocity missing"):
        limits_from_joint_limits_yaml(bad, ["j1"])


def test_resolve_limits_combines_parameters_and_file_and_names_what_is_missing():
    file = {"j1": {"max_velocity": 2.0}, "j2": {"max_velocity": 3.0}}
    lim = resolve_limits(["j1", "j2"], position_min=[-1, -2], position_max=[1, 2], from_file=file,
                         velocity_scale=0.5)
    np.testing.assert_array_equal(lim.max_velocity, [1.0, 1.5])
    np.testing.assert_array_equal(lim.lower, [-1, -2])
    with pytest.raises(JointError, match="joint 'j2': no max_velocity limit"):
        resolve_limits(["j1", "j2"], position_min=[-1, -2], position_max=[1, 2], from_file={"j1": file["j1"]})
    with pytest.raises(JointError, match="position_min: 1 values for 2 joints"):
        resolve_limits(["j1", "j2"], position_min=[-1], position_max=[1, 2], max_velocity=[1, 1])


@pytest.mark.parametrize("lower, upper, vmax, match", [
    ([0.0], [0.0], [1.0], "lower 0.0 must be < upper 0.0"),
    ([-np.inf], [0.0], [1.0], "position limits must be finite"),
    ([0.0], [1.0], [0.0], "max_velocity must be finite and > 0"),
    ([0.0], [1.0], [np.nan], "max_velocity must be finite and > 0"),
])
def test_joint_limits_validate_with_the_joint_name(lower, upper, vmax, match):
    with pytest.raises(JointError, match=f"q: {match}" if "lower" not in match else match):
        JointLimits(("q",), np.array(lower), np.array(upper), np.array(vmax))


def test_joint_limits_reject_duplicates_and_wrong_lengths():
    with pytest.raises(JointError, match="duplicate"):
        JointLimits(("a", "a"), np.zeros(2), np.ones(2), np.ones(2))
    with pytest.raises(JointError, match="upper has 1 values for 2 joints"):
        JointLimits(("a", "b"), np.zeros(2), np.ones(1), np.ones(2))

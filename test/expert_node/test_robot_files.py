"""The robot's own files: ros2_controllers.yaml, MoveIt joint_limits.yaml and the URDF, combined
with the precedence parameters > joint_limits.yaml > URDF (each value with its source)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robot_files as rf
from arvla_base.config import ConfigError
from arvla_action_expert.gripper import GripperLimiter, GripperSpec, gripper_target, gripper_trajectory
from arvla_action_expert.joints import (CONTINUOUS_PLAUSIBLE_RAD, JointError, JointLimits, UrdfRobot,
                                        controller_from_yaml, implausible_joints, limits_from_joint_limits_yaml,
                                        read_joint_limits_yaml, substitute)
from arvla_action_expert.node_config import ExpertNodeConfig
from arvla_action_expert.trajectory import KeptPoint, build_plan, check_plan, hold_plan


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def panda(tmp_path):
    return rf.panda_files(tmp_path / "panda")


@pytest.fixture
def ur(tmp_path):
    return rf.ur_files(tmp_path / "ur")


def _panda_cfg(files, **kw):
    base = dict(controllers_yaml=str(files["controllers"]), controller_name="panda_arm_controller",
                joint_limits_yaml=str(files["joint_limits"]), urdf_file=str(files["urdf"]))
    return ExpertNodeConfig(**{**base, **kw})


def _ur_cfg(files, **kw):
    base = dict(controllers_yaml=str(files["controllers"]), controller_name="scaled_joint_trajectory_controller",
                joint_limits_yaml=str(files["joint_limits"]), urdf_file=str(files["urdf"]), tf_prefix=rf.UR_PREFIX)
    return ExpertNodeConfig(**{**base, **kw})


# ---------------------------------------------------------------- unmodified files, no typed limits


def test_panda_like_resolves_from_urdf_and_moveit_files_with_sources(panda):
    setup = _panda_cfg(panda, gripper_controller="panda_hand_controller").resolve_robot()
    assert list(setup.joints) == rf.PANDA_ARM and setup.state_joints == rf.PANDA_ARM + [rf.FINGER]
    g = setup.gripper
    assert (g.command, g.joint, g.action_name) == ("gripper_action", rf.FINGER, "panda_hand_controller/gripper_cmd")
    lim = setup.state_limits
    # positions: the URDF's safety_controller soft limits (as MoveIt takes them)
    np.testing.assert_allclose(lim.lower[:7], np.array(rf.PANDA_LOWER) + rf.PANDA_SOFT_MARGIN)
    np.testing.assert_allclose(lim.upper[:7], np.array(rf.PANDA_UPPER) - rf.PANDA_SOFT_MARGIN)
    assert (lim.lower[7], lim.upper[7]) == (0.0, 0.04)
    # velocities: the file's, times its default_velocity_scaling_factor; accelerations scaled too
    np.testing.assert_allclose(lim.max_velocity, np.array(rf.PANDA_VMAX + [0.1]) * rf.PANDA_SCALE)
    np.testing.assert_allclose(lim.max_acceleration[:7], 3.75 * 0.1)
    assert lim.max_acceleration[7] == math.inf  # has_acceleration_limits: false
    src = setup.resolution.sources
    assert src["panda_joint1"] == {"lower": "URDF safety_controller", "upper": "URDF safety_controller",
                                   "max_velocity": "joint_limits.yaml", "max_acceleration": "joint_limits.yaml"}
    assert src[rf.FINGER]["lower"] == "URDF" and src[rf.FINGER]["max_acceleration"] == "none"
    assert setup.resolution.velocity_scale_source == "joint_limits.yaml default_velocity_scaling_factor"
    assert any("velocity x 0.1" in line for line in setup.describe())


def test_ur_like_resolves_tf_prefix_scaled_jtc_and_continuous_wrist(ur):
    setup = _ur_cfg(ur).resolve_robot()
    assert list(setup.joints) == rf.UR_JOINTS
    assert setup.controller.type == "ur_controllers/ScaledJointTrajectoryController"
    lim = setup.limits
    assert lim.continuous.tolist() == [False] * 5 + [True]
    assert lim.lower[5] == -math.inf and lim.upper[5] == math.inf
    np.testing.assert_allclose(lim.upper[:5], 2 * math.pi)
    np.testing.assert_allclose(lim.max_velocity, rf.UR_YAML_VMAX)  # joint_limits.yaml > URDF
    assert setup.resolution.sources["ur_wrist_3_joint"]["lower"] == "URDF continuous"
    assert any("without tf_prefix 'ur_'" in n for n in setup.resolution.notes)
    d = setup.to_dict()
    assert d["joints"]["ur_wrist_3_joint"]["lower"] is None and d["joints"]["ur_wrist_3_joint"]["continuous"]
    # any JointTrajectoryController type is accepted by name
    jtc = dataclasses.replace(_ur_cfg(ur), controller_name="joint_trajectory_controller")
    assert list(jtc.resolve_robot().joints) == rf.UR_JOINTS


def test_precedence_parameters_over_joint_limits_yaml_over_urdf(ur):
    cfg = _ur_cfg(ur, position_min=[-1.0] * 6, position_max=[1.0] * 6, velocity_scale=0.5)
    setup = cfg.resolve_robot()
    lim = setup.limits
    assert lim.continuous.tolist() == [False] * 6  # the parameters bound even the continuous wrist
    np.testing.assert_allclose(lim.upper, 1.0)
    np.testing.assert_allclose(lim.max_velocity, np.array(rf.UR_YAML_VMAX) * 0.5)
    assert setup.resolution.sources["ur_elbow_joint"]["upper"] == "parameter"
    assert setup.resolution.velocity_scale_source == "parameter velocity_scale"
    # a parameter wider than the URDF wins, with a note; velocities given as parameters win over both
    wide = _ur_cfg(ur, position_min=[-9.0] * 6, position_max=[9.0] * 6, max_velocity=[9.0] * 6).resolve_robot()
    assert wide.limits.max_velocity[0] == 9.0
    assert wide.resolution.sources["ur_elbow_joint"]["max_velocity"] == "parameter"
    assert any("wider than the URDF" in n for n in wide.resolution.notes)
    assert any("above the URDF" in n for n in wide.resolution.notes)


def test_urdf_alone_bounds_every_joint(tmp_path):
    urdf = _write(tmp_path / "r.urdf", rf.ur_urdf())
    cfg = ExpertNodeConfig(joints=rf.UR_JOINTS, urdf_file=str(urdf))
    lim = cfg.joint_limits(rf.UR_JOINTS)
    np.testing.assert_allclose(lim.max_velocity, rf.UR_URDF_VMAX)
    assert cfg.needs_robot_description()  # some limit is left to the URDF (here: the file)
    typed = ExpertNodeConfig(joints=["a"], position_min=[-1.0], position_max=[1.0], max_velocity=[1.0])
    assert not typed.needs_robot_description()


# ---------------------------------------------------------------- joint_limits.yaml forms

@pytest.mark.parametrize("text", [
    "joint_limits:\n  a: {has_velocity_limits: true, max_velocity: 2}\ndefault_velocity_scaling_factor: 0.5\n",
    "robot_description_planning:\n  default_velocity_scaling_factor: 0.5\n  joint_limits:\n"
    "    a: {has_velocity_limits: true, max_velocity: 2}\n",
    "/**:\n  ros__parameters:\n    robot_description_planning:\n      default_velocity_scaling_factor: 0.5\n"
    "      joint_limits:\n        a: {has_velocity_limits: true, max_velocity: 2}\n",
    "move_group:\n  ros__parameters:\n    joint_limits:\n      a: {max_velocity: 2}\n"
    "    default_velocity_scaling_factor: 0.5\n",
])
def test_joint_limits_yaml_in_every_form_moveit_loads(tmp_path, text):
    f = _write(tmp_path / "joint_limits.yaml", text)
    assert limits_from_joint_limits_yaml(f, ["a", "b"]) == {"a": {"max_velocity": 2.0}}
    assert read_joint_limits_yaml(f).default_velocity_scaling_factor == 0.5


def test_joint_limits_yaml_flags_wraparound_and_errors(tmp_path):
    f = _write(tmp_path / "l.yaml", """joint_limits:
  a: {has_position_limits: false, min_position: -1, max_position: 1, has_velocity_limits: true, max_velocity: 1,
      has_acceleration_limits: true, max_acceleration: 2}
  b: {angle_wraparound: true, max_velocity: 3}
  c: {has_velocity_limits: false, max_velocity: 3, has_acceleration_limits: false, max_acceleration: 0}
""")
    assert limits_from_joint_limits_yaml(f, ["a", "b", "c"]) == {
        "a": {"max_velocity": 1.0, "max_acceleration": 2.0}, "b": {"continuous": True, "max_velocity": 3.0}, "c": {}}
    with pytest.raises(JointError, match="no 'joint_limits' mapping"):
        read_joint_limits_yaml(_write(tmp_path / "x.yaml", "limits: {}\n"))
    with pytest.raises(JointError, match="more than one 'joint_limits' mapping"):
        read_joint_limits_yaml(_write(tmp_path / "y.yaml", "joint_limits: {}\nrobot_description_planning: "
                                                           "{joint_limits: {}}\n"))
    with pytest.raises(JointError, match="default_velocity_scaling_factor must be a number in"):
        read_joint_limits_yaml(_write(tmp_path / "z.yaml", "joint_limits: {}\ndefault_velocity_scaling_factor: 0\n"))


# ---------------------------------------------------------------- ros2_controllers.yaml

def test_substitutions_resolve_or_name_the_key(ur, tmp_path):
    assert substitute("$(var tf_prefix)elbow", {"tf_prefix": "l_"}, "k") == "l_elbow"
    with pytest.raises(JointError, match=r"k: '\$\(var robot\)' is not resolved: no value for 'robot'"):
        substitute("$(var robot)x", {"tf_prefix": ""}, "k")
    with pytest.raises(JointError, match="not supported here"):
        substitute("$(env HOME)x", {}, "k")
    spec = controller_from_yaml(ur["controllers"], "scaled_joint_trajectory_controller", {"tf_prefix": "r_"})
    assert spec.joints[0] == "r_shoulder_pan_joint" and spec.kind == "trajectory"
    f = _write(tmp_path / "c.yaml", "arm_controller:\n  ros__parameters:\n    joints: ['$(var arm)_j1']\n")
    with pytest.raises(ConfigError, match=r"arm_controller.ros__parameters.joints\[0\]: .*no value for 'arm'"):
        ExpertNodeConfig(controllers_yaml=str(f)).controller_joints()
    cfg = ExpertNodeConfig(controllers_yaml=str(f), yaml_vars=["arm=left"])
    assert cfg.controller_joints() == ["left_j1"]
    with pytest.raises(ConfigError, match="yaml_vars: entries must be 'NAME=VALUE'"):
        ExpertNodeConfig(controllers_yaml=str(f), yaml_vars=["left"])


def test_controller_types(ur, panda):
    with pytest.raises(ConfigError, match="'forward_position_controller' is a position_controllers/"
                                          "JointGroupPositionController"):
        dataclasses.replace(_ur_cfg(ur), controller_name="forward_position_controller").resolve_robot()
    with pytest.raises(ConfigError, match="is a position_controllers/GripperActionController"):
        _panda_cfg(panda, controller_name="panda_hand_controller").controller_joints()


# ---------------------------------------------------------------- URDF

def test_urdf_errors_name_the_problem(tmp_path, ur):
    with pytest.raises(JointError, match="not valid XML"):
        UrdfRobot.from_xml("<robot", "test")
    with pytest.raises(JointError, match="root element is <sdf>"):
        UrdfRobot.from_xml("<sdf/>", "test")
    with pytest.raises(JointError, match="unexpanded xacro"):
        UrdfRobot.from_xml('<robot name="r" xmlns:xacro="http://www.ros.org/wiki/xacro"><xacro:include '
                           'filename="x.xacro"/></robot>', "test")
    with pytest.raises(JointError, match="empty"):
        UrdfRobot.from_xml("  ", "topic /robot_description")
    with pytest.raises(ConfigError, match="urdf_file: URDF file not found"):
        _ur_cfg(ur, urdf_file=str(tmp_path / "missing.urdf")).resolve_robot()
    with pytest.raises(ConfigError, match="is parameter tf_prefix 'ur_' missing"):
        _ur_cfg(ur, tf_prefix="").resolve_robot()
    zero = UrdfRobot.from_xml('<robot name="r"><link name="a"/><link name="b"/><joint name="q" type="revolute">'
                              '<parent link="a"/><child link="b"/><limit effort="1" velocity="1"/></joint></robot>',
                              "test")
    with pytest.raises(JointError, match="no position range"):
        zero.limits_for(["q"])


def test_mimic_joints_are_not_commanded_but_follow_the_gripper(panda, tmp_path):
    with pytest.raises(ConfigError, match="mimics 'panda_finger_joint1'"):
        ExpertNodeConfig(joints=[rf.FINGER2], urdf_file=str(panda["urdf"])).resolve_robot()
    with pytest.raises(ConfigError, match="fixed joint"):
        ExpertNodeConfig(joints=["panda_joint8"], urdf_file=str(panda["urdf"])).resolve_robot()
    files = rf.panda_files(tmp_path / "jtc_hand", hand="joint_trajectory")
    cfg = _panda_cfg(files, gripper_controller="panda_hand_controller")
    setup = cfg.resolve_robot()  # the URDF tells which hand joint leads
    g = setup.gripper
    assert (g.command, g.joint, g.controller_joints) == ("joint_trajectory", rf.FINGER, (rf.FINGER, rf.FINGER2))
    assert g.followers == ((rf.FINGER2, 1.0, 0.0),) and g.topic == "panda_hand_controller/joint_trajectory"
    assert setup.gripper_limits.names == (rf.FINGER, rf.FINGER2)
    no_urdf = dataclasses.replace(cfg, urdf_file="", gripper_joint=rf.FINGER)
    assert no_urdf.needs_robot_description()  # the followers' relation is in the URDF only
    with pytest.raises(ConfigError, match="gripper_joint: not set and controller 'panda_hand_controller' has"):
        dataclasses.replace(cfg, urdf_file="").state_joints()


def test_gripper_command_auto_needs_a_known_type(panda, tmp_path):
    with pytest.raises(ConfigError, match="gripper_command: 'auto' cannot tell"):
        ExpertNodeConfig(joints=rf.PANDA_ARM, gripper_controller="hand").gripper()
    spec = ExpertNodeConfig(joints=rf.PANDA_ARM, gripper_controller="hand", gripper_joint=rf.FINGER,
                            gripper_command="gripper_action", gripper_action="/hand/cmd").gripper()
    assert spec.action_name == "/hand/cmd"
    with pytest.raises(ConfigError, match="must have one value per joint \\(8 joints, the gripper joint last\\)"):
        ExpertNodeConfig(joints=rf.PANDA_ARM, gripper_controller="hand", max_velocity=[1.0] * 7)
    with pytest.raises(ConfigError, match="gripper_controller: must differ"):
        ExpertNodeConfig(joints=["a"], gripper_controller="arm_controller")


# ---------------------------------------------------------------- continuous joints stay safe

def test_joint_limits_continuous_rules():
    JointLimits(("w",), [-math.inf], [math.inf], [1.0], continuous=[True])
    with pytest.raises(JointError, match="w: a continuous joint has no position limits"):
        JointLimits(("w",), [-1.0], [1.0], [1.0], continuous=[True])
    with pytest.raises(JointError, match="w: position limits must be finite"):
        JointLimits(("w",), [-math.inf], [math.inf], [1.0])
    with pytest.raises(JointError, match="w: max_velocity must be finite"):
        JointLimits(("w",), [-math.inf], [math.inf], [math.inf], continuous=[True])
    with pytest.raises(JointError, match="max_acceleration must be > 0"):
        JointLimits(("w",), [-1.0], [1.0], [1.0], max_acceleration=[0.0])
    lim = JointLimits(("a", "w"), [-1.0, -math.inf], [1.0, math.inf], [1.0, 1.0], continuous=[False, True])
    assert implausible_joints(np.array([0.0, 500.0]), lim) == []
    assert implausible_joints(np.array([0.0, CONTINUOUS_PLAUSIBLE_RAD * 2]), lim) == ["w"]
    assert implausible_joints(np.array([1e300, -1e300]), lim) == ["a", "w"]
    assert lim.subset(["w"]).continuous.tolist() == [True]


WILD = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([1e300, -1e300, math.nan, math.inf, -math.inf]))


@st.composite
def mixed_limits(draw):
    j = draw(st.integers(1, 5))
    cont = np.array(draw(st.lists(st.booleans(), min_size=j, max_size=j)))
    lower = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=j, max_size=j)))
    upper = lower + np.array(draw(st.lists(st.floats(1e-2, 1e3), min_size=j, max_size=j)))
    vmax = np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=j, max_size=j)))
    return JointLimits(tuple(f"j{i}" for i in range(j)), np.where(cont, -np.inf, lower),
                       np.where(cont, np.inf, upper), vmax, continuous=cont)


def _assert_safe(plan, current, lim, period_ns):
    assert np.all(np.isfinite(plan.positions)) and np.all(np.isfinite(plan.velocities))
    assert np.all(plan.positions >= lim.lower) and np.all(plan.positions <= lim.upper)
    assert np.all(np.abs(plan.velocities) <= lim.max_velocity) and np.all(plan.velocities[-1] == 0)
    check_plan(plan, current, lim)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lim=mixed_limits(), data=st.data(), period_ns=st.integers(1_000_000, 200_000_000))
def test_any_targets_with_continuous_joints_give_a_finite_velocity_bounded_plan(lim, data, period_ns):
    j = lim.dof
    current = np.array(data.draw(st.lists(st.floats(-2e3, 2e3), min_size=j, max_size=j)))
    k = data.draw(st.integers(1, 6))
    targets = np.array(data.draw(st.lists(st.lists(WILD, min_size=j, max_size=j), min_size=k, max_size=k)))
    plan = build_plan(current, targets, period_ns, lim)
    _assert_safe(plan, current, lim, period_ns)
    _assert_safe(hold_plan(current, period_ns, lim), current, lim, period_ns)
    # each step moves at most max_velocity * period from the previous (the first from the measurement)
    start = np.clip(current, lim.lower, lim.upper)
    steps = np.abs(np.diff(np.vstack([start, plan.positions]), axis=0))
    assert np.all(steps <= lim.max_velocity * period_ns * 1e-9 * (1 + 1e-9) + 1e-9)
    keep = KeptPoint(period_ns, np.array(data.draw(st.lists(WILD, min_size=j, max_size=j))),
                     np.array(data.draw(st.lists(WILD, min_size=j, max_size=j))))
    if k >= 2:
        _assert_safe(build_plan(current, targets, period_ns, lim, keep=keep), current, lim, period_ns)


# ---------------------------------------------------------------- gripper output rules

def test_gripper_limiter_rate_and_deadband():
    lim = GripperLimiter(rate_hz=5.0, deadband=0.001)
    assert lim.due(0, 0.02)
    lim.sent(0, 0.02)
    assert not lim.due(100_000_000, 0.03)   # too soon
    assert not lim.due(200_000_000, 0.0205)  # within the deadband
    assert lim.due(200_000_000, 0.03)
    assert lim.due(-1, 0.02)  # the clock went back: start over
    with pytest.raises(ValueError):
        GripperLimiter(0.0, 0.0)


def test_gripper_target_and_trajectory_follow_limits_and_mimic():
    lim = JointLimits(("f1", "f2"), [0.0, 0.0], [0.04, 0.08], [0.05, 0.1])
    assert gripper_target([0.5, 0.0], lim.subset(["f1"])) == 0.04
    assert gripper_target([math.nan], lim.subset(["f1"])) is None
    spec = GripperSpec("hand", "f1", "joint_trajectory", ("f1", "f2"), (("f2", 2.0, 0.0),), topic="hand/jt")
    plan = gripper_trajectory(0.01, [1.0, math.nan, -1.0], spec, 50_000_000, lim)
    np.testing.assert_allclose(plan.positions[:, 1], 2 * plan.positions[:, 0])
    assert np.all(np.abs(np.diff(np.r_[0.01, plan.positions[:, 0]])) <= 0.05 * 0.05 + 1e-12)


def test_urdf_text_as_the_robot_description_parameter(ur):
    cfg = _ur_cfg(ur, urdf_file="", robot_description=rf.ur_urdf())
    setup = cfg.resolve_robot()
    assert setup.urdf_origin == "parameter robot_description"
    assert setup.limits.continuous[5]
    with pytest.raises(ConfigError, match="robot_description: robot_description from parameter robot_description "
                                          "is not valid XML"):
        _ur_cfg(ur, urdf_file="", robot_description="<robot").resolve_robot()

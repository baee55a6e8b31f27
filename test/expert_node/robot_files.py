"""Robot configuration files in the formats real setups ship, written by the tests.

Two setups, written from their public formats (not copied): a Panda-like arm (7 joints + a
2-finger hand whose second finger mimics the first, MoveIt's joint_limits.yaml under
``robot_description_planning``, the hand on a GripperActionController or on a second
JointTrajectoryController), and a UR-like arm (6 joints named with a tf_prefix, the driver's
ros2_controllers.yaml with ``$(var tf_prefix)`` and a scaled_joint_trajectory_controller, a
MoveIt joint_limits.yaml without the prefix, a continuous wrist joint).
"""

from __future__ import annotations

import math
import pathlib

PANDA_ARM = [f"panda_joint{i}" for i in range(1, 8)]
PANDA_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
PANDA_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
PANDA_VMAX = [2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61]
PANDA_SOFT_MARGIN = 0.0001  # the URDF's <safety_controller> soft limits lie this far inside
PANDA_SCALE = 0.1  # default_velocity_scaling_factor in its joint_limits.yaml
FINGER = "panda_finger_joint1"
FINGER2 = "panda_finger_joint2"

UR_BARE = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
           "wrist_3_joint"]
UR_PREFIX = "ur_"
UR_JOINTS = [UR_PREFIX + j for j in UR_BARE]
UR_URDF_VMAX = [3.1416, 3.1416, 3.1416, 6.2832, 6.2832, 6.2832]
UR_YAML_VMAX = [2.0, 2.0, 3.0, 3.0, 3.0, 3.0]  # MoveIt's file: tighter than the URDF


def _link(name: str) -> str:
    return f'  <link name="{name}"/>\n'


def _joint(name: str, type_: str, parent: str, child: str, limit: str = "", extra: str = "") -> str:
    return (f'  <joint name="{name}" type="{type_}">\n    <parent link="{parent}"/>\n    <child link="{child}"/>\n'
            f'    <origin xyz="0 0 0.1" rpy="0 0 0"/>\n    <axis xyz="0 0 1"/>\n{limit}{extra}  </joint>\n')


def panda_urdf() -> str:
    """7 revolute joints with safety_controller soft limits, a fixed flange and hand, two prismatic
    fingers (the second mimics the first), and a <ros2_control> block (not ours to parse)."""
    links = [f"panda_link{i}" for i in range(9)] + ["panda_hand", "panda_leftfinger", "panda_rightfinger"]
    text = '<?xml version="1.0" encoding="utf-8"?>\n<robot name="panda">\n' + "".join(map(_link, links))
    for i, name in enumerate(PANDA_ARM):
        lo, hi, v = PANDA_LOWER[i], PANDA_UPPER[i], PANDA_VMAX[i]
        limit = f'    <limit effort="87" lower="{lo}" upper="{hi}" velocity="{v}"/>\n'
        soft = (f'    <safety_controller k_position="100.0" k_velocity="40.0" '
                f'soft_lower_limit="{lo + PANDA_SOFT_MARGIN}" soft_upper_limit="{hi - PANDA_SOFT_MARGIN}"/>\n')
        text += _joint(name, "revolute", f"panda_link{i}", f"panda_link{i + 1}", limit, soft)
    text += _joint("panda_joint8", "fixed", "panda_link7", "panda_link8")
    text += _joint("panda_hand_joint", "fixed", "panda_link8", "panda_hand")
    finger_limit = '    <limit effort="100" lower="0.0" upper="0.04" velocity="0.2"/>\n'
    text += _joint(FINGER, "prismatic", "panda_hand", "panda_leftfinger", finger_limit)
    text += _joint(FINGER2, "prismatic", "panda_hand", "panda_rightfinger", finger_limit,
                   f'    <mimic joint="{FINGER}"/>\n')
    text += ('  <ros2_control name="FrankaHardware" type="system">\n    <hardware><plugin>mock_components/'
             'GenericSystem</plugin></hardware>\n  </ros2_control>\n</robot>\n')
    return text


def panda_joint_limits_yaml() -> str:
    """MoveIt 2's joint_limits.yaml as many configs ship it: under robot_description_planning,
    velocities and accelerations only (positions are the URDF's), a global velocity scaling."""
    text = ("# MoveIt joint limits: velocities/accelerations here, positions from the URDF\n"
            "robot_description_planning:\n  default_velocity_scaling_factor: 0.1\n"
            "  default_acceleration_scaling_factor: 0.1\n  joint_limits:\n")
    for name, v in zip(PANDA_ARM, PANDA_VMAX):
        text += (f"    {name}:\n      has_velocity_limits: true\n      max_velocity: {v}\n"
                 "      has_acceleration_limits: true\n      max_acceleration: 3.75\n")
    text += (f"    {FINGER}:\n      has_velocity_limits: true\n      max_velocity: 0.1\n"
             "      has_acceleration_limits: false\n      max_acceleration: 0\n")
    return text


def panda_controllers_yaml(hand: str = "gripper_action") -> str:
    """ros2_controllers.yaml: the arm on a JTC, the hand on a GripperActionController
    (``hand='gripper_action'``) or on a second JTC over both fingers (``'joint_trajectory'``)."""
    hand_type = ("position_controllers/GripperActionController" if hand == "gripper_action"
                 else "joint_trajectory_controller/JointTrajectoryController")
    hand_params = (f"    joint: {FINGER}\n" if hand == "gripper_action" else
                   f"    joints:\n      - {FINGER}\n      - {FINGER2}\n    command_interfaces: [position]\n"
                   "    state_interfaces: [position]\n")
    return ("controller_manager:\n  ros__parameters:\n    update_rate: 1000\n\n"
            "    panda_arm_controller:\n      type: joint_trajectory_controller/JointTrajectoryController\n\n"
            f"    panda_hand_controller:\n      type: {hand_type}\n\n"
            "    joint_state_broadcaster:\n      type: joint_state_broadcaster/JointStateBroadcaster\n\n"
            "panda_arm_controller:\n  ros__parameters:\n    command_interfaces:\n      - position\n"
            "    state_interfaces:\n      - position\n      - velocity\n    joints:\n"
            + "".join(f"      - {j}\n" for j in PANDA_ARM)
            + "\npanda_hand_controller:\n  ros__parameters:\n" + hand_params)


def ur_urdf(prefix: str = UR_PREFIX) -> str:
    """Six joints named with the tf_prefix (as the UR description's xacro expands them); the
    wrist_3 joint is continuous (no position limits), the others +-2 pi."""
    links = ["base_link"] + [f"{prefix}link{i}" for i in range(1, 7)]
    text = '<robot name="ur">\n' + "".join(map(_link, links))
    for i, (bare, v) in enumerate(zip(UR_BARE, UR_URDF_VMAX)):
        if bare == "wrist_3_joint":
            limit, type_ = f'    <limit effort="28" velocity="{v}"/>\n', "continuous"
        else:
            limit, type_ = f'    <limit effort="150" lower="{-2 * math.pi}" upper="{2 * math.pi}" velocity="{v}"/>\n', \
                "revolute"
        text += _joint(prefix + bare, type_, links[i], links[i + 1], limit)
    return text + "</robot>\n"


def ur_controllers_yaml() -> str:
    """The UR driver's controller file form: joint names with $(var tf_prefix), a scaled JTC."""
    joints = "".join(f"      - $(var tf_prefix){j}\n" for j in UR_BARE)
    return ("controller_manager:\n  ros__parameters:\n    update_rate: 500\n\n"
            "    joint_state_broadcaster:\n      type: joint_state_broadcaster/JointStateBroadcaster\n\n"
            "    scaled_joint_trajectory_controller:\n      type: ur_controllers/ScaledJointTrajectoryController\n\n"
            "    joint_trajectory_controller:\n      type: joint_trajectory_controller/JointTrajectoryController\n\n"
            "    forward_position_controller:\n      type: position_controllers/JointGroupPositionController\n\n"
            "speed_scaling_state_broadcaster:\n  ros__parameters:\n    state_publish_rate: 100.0\n"
            "    tf_prefix: \"$(var tf_prefix)\"\n\n"
            f"scaled_joint_trajectory_controller:\n  ros__parameters:\n    joints:\n{joints}"
            "    command_interfaces:\n      - position\n    state_interfaces:\n      - position\n      - velocity\n"
            "    state_publish_rate: 100.0\n    action_monitor_rate: 20.0\n    allow_partial_joints_goal: false\n"
            "    constraints:\n      stopped_velocity_tolerance: 0.2\n      goal_time: 0.0\n"
            + "".join(f"      $(var tf_prefix){j}: {{ trajectory: 0.2, goal: 0.1 }}\n" for j in UR_BARE)
            + "    speed_scaling_interface_name: $(var tf_prefix)speed_scaling/speed_scaling_factor\n\n"
            f"joint_trajectory_controller:\n  ros__parameters:\n    joints:\n{joints}\n"
            f"forward_position_controller:\n  ros__parameters:\n    joints:\n{joints}")


def ur_joint_limits_yaml() -> str:
    """MoveIt's joint_limits.yaml for the UR: plain ``joint_limits:``, names without the prefix,
    positions switched off (the URDF has them), velocities and accelerations."""
    text = "joint_limits:\n"
    for bare, v in zip(UR_BARE, UR_YAML_VMAX):
        text += (f"  {bare}:\n    has_effort_limits: true\n    max_effort: 150.0\n    has_position_limits: false\n"
                 f"    has_velocity_limits: true\n    max_velocity: {v}\n    has_acceleration_limits: true\n"
                 "    max_acceleration: 5.0\n")
    return text


def write(directory: pathlib.Path, **files: str) -> dict[str, pathlib.Path]:
    """Write ``name=text`` files into ``directory``; returns their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        out[name] = path
    return out


def panda_files(directory: pathlib.Path, hand: str = "gripper_action") -> dict[str, pathlib.Path]:
    return write(directory, urdf=panda_urdf(), joint_limits=panda_joint_limits_yaml(),
                 controllers=panda_controllers_yaml(hand))


def ur_files(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    return write(directory, urdf=ur_urdf(), joint_limits=ur_joint_limits_yaml(), controllers=ur_controllers_yaml())

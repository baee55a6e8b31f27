"""Full bring-up: perception + action expert, optionally the embedded MuJoCo robot.

On your robot (ros2_control running, camera publishing):
    ros2 launch arvla bringup.launch.py checkpoint:=/path/to/expert camera_topic:=/camera/image_raw
With the embedded sim instead of a robot:
    ros2 launch arvla bringup.launch.py checkpoint:=/path/to/expert with_sim:=true use_sim_time:=true
Without launch_ros (this repo's PyPI ROS): `arvla bringup` runs the same graph from the same
parameter files in one process.

Perception starts with the settings the checkpoint was trained with (hidden_layer, token_grid...,
recorded in its config.json) on top of config/perception.yaml, so that its prefixes carry the
model_id the expert expects; `perception_params:=FILE` replaces them and must give the same
settings (else the launch stops, naming the parameter and the file to use).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from arvla.perception_params import CheckpointPerceptionParams


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("arvla"), "config"])
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (sim or bag replay)"),
        DeclareLaunchArgument("with_sim", default_value="false",
                              description="also start the embedded MuJoCo Panda (arvla_sim)"),
        DeclareLaunchArgument("perception_params", default_value="",
                              description="parameters file of the perception node ('' = "
                                          "config/perception.yaml with the perception settings the "
                                          "checkpoint was trained with)"),
        DeclareLaunchArgument("expert_params",
                              default_value=PathJoinSubstitution([config, "action_expert.yaml"]),
                              description="parameters file of the action expert node"),
        DeclareLaunchArgument("sim_params", default_value=PathJoinSubstitution([config, "sim.yaml"]),
                              description="parameters file of the sim node"),
        DeclareLaunchArgument("checkpoint", description="trained expert directory (arvla train --out)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="local backbone directory ('' = bundled default weights)"),
        DeclareLaunchArgument("controller_name", default_value="arm_controller",
                              description="joint_trajectory_controller to command"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic of the camera"),
        Node(
            package="arvla",
            executable="sim_node",
            name="arvla_sim",
            namespace=namespace,
            output="screen",
            condition=IfCondition(LaunchConfiguration("with_sim")),
            parameters=[LaunchConfiguration("sim_params"), {
                "controller_name": LaunchConfiguration("controller_name"),
                "image_topic": LaunchConfiguration("camera_topic"),
            }],
        ),
        Node(
            package="arvla",
            executable="perception_node",
            name="arvla_perception",
            namespace=namespace,
            output="screen",
            parameters=[CheckpointPerceptionParams(
                checkpoint=LaunchConfiguration("checkpoint"),
                perception_params=LaunchConfiguration("perception_params"),
                default=PathJoinSubstitution([config, "perception.yaml"])), {
                "use_sim_time": use_sim_time,
                "image_topic": LaunchConfiguration("camera_topic"),
                "model_path": LaunchConfiguration("model_path"),
            }],
        ),
        Node(
            package="arvla",
            executable="action_expert_node",
            name="arvla_action_expert",
            namespace=namespace,
            output="screen",
            parameters=[LaunchConfiguration("expert_params"), {
                "use_sim_time": use_sim_time,
                "checkpoint": LaunchConfiguration("checkpoint"),
                "controller_name": LaunchConfiguration("controller_name"),
            }],
        ),
    ])

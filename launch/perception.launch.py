"""Perception only: camera (+ instruction) -> /arvla/vl_prefix.

    ros2 launch arvla perception.launch.py camera_topic:=/wrist_camera/image_raw use_sim_time:=true
    ros2 launch arvla perception.launch.py checkpoint:=/path/to/expert   # the settings it was trained with
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from arvla.perception_params import CheckpointPerceptionParams


def generate_launch_description() -> LaunchDescription:
    params_file = CheckpointPerceptionParams(
        checkpoint=LaunchConfiguration("checkpoint"),
        perception_params=LaunchConfiguration("perception_params"),
        default=PathJoinSubstitution([FindPackageShare("arvla"), "config", "perception.yaml"]))
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (sim or bag replay)"),
        DeclareLaunchArgument("perception_params", default_value="",
                              description="parameters file of the perception node ('' = "
                                          "config/perception.yaml, with the checkpoint's perception "
                                          "settings if one is given)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="expert checkpoint whose recorded perception settings "
                                          "(hidden_layer, token_grid...) to use ('' = none)"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic of the camera"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="local backbone directory ('' = bundled default weights)"),
        Node(
            package="arvla",
            executable="perception_node",
            name="arvla_perception",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[params_file, {
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "image_topic": LaunchConfiguration("camera_topic"),
                "model_path": LaunchConfiguration("model_path"),
            }],
        ),
    ])

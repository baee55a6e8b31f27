"""Action expert only: /arvla/vl_prefix + /joint_states -> /<controller>/joint_trajectory.

    ros2 launch arvla action_expert.launch.py checkpoint:=/path/to/expert controller_name:=arm_controller
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (sim or bag replay)"),
        DeclareLaunchArgument(
            "expert_params",
            default_value=PathJoinSubstitution([FindPackageShare("arvla"), "config", "action_expert.yaml"]),
            description="parameters file of the action expert node"),
        DeclareLaunchArgument("checkpoint", description="trained expert directory (arvla train --out)"),
        DeclareLaunchArgument("controller_name", default_value="arm_controller",
                              description="joint_trajectory_controller to command"),
        DeclareLaunchArgument("controllers_yaml", default_value="",
                              description="your ros2_controllers.yaml: joints are read from it"),
        DeclareLaunchArgument("joint_limits_yaml", default_value="",
                              description="your MoveIt joint_limits.yaml"),
        Node(
            package="arvla",
            executable="action_expert_node",
            name="arvla_action_expert",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("expert_params"), {
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "checkpoint": LaunchConfiguration("checkpoint"),
                "controller_name": LaunchConfiguration("controller_name"),
                "controllers_yaml": LaunchConfiguration("controllers_yaml"),
                "joint_limits_yaml": LaunchConfiguration("joint_limits_yaml"),
            }],
        ),
    ])

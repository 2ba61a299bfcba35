"""Launch the lbi_ros 3D lifter: ros2 launch lbi_ros lift.launch.py [camera:=/camera] [keypoints:=...]

A camera alone is enough with keypoints_source:=builtin: the node then finds the people itself and
publishes them on the keypoints topic instead of reading it.

Topics are remapped relative to the camera namespace: <camera>/image_raw, <camera>/camera_info and
the detector's keypoints; outputs go to skeletons_3d, markers, /tf and /diagnostics.
Fast DDS gets config/fastdds_large_frames.xml (a shared-memory segment that holds camera frames;
dds_profile:=<file> to use your own); give the camera driver the same file (README, "Frames that arrive").
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    camera = LaunchConfiguration("camera")
    default_params = PathJoinSubstitution([FindPackageShare("lbi_ros"), "config", "lift.yaml"])
    dds_profile = PathJoinSubstitution([FindPackageShare("lbi_ros"), "config", "fastdds_large_frames.xml"])
    rviz_config = PathJoinSubstitution([FindPackageShare("lbi_ros"), "config", "rviz", "lift.rviz"])
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera", description="camera namespace"),
        DeclareLaunchArgument("image", default_value=[camera, "/image_raw"]),
        DeclareLaunchArgument("camera_info", default_value=[camera, "/camera_info"]),
        DeclareLaunchArgument("keypoints", default_value="/keypoints_2d", description="lbi_ros/Person2DArray"),
        DeclareLaunchArgument("params_file", default_value=default_params),
        DeclareLaunchArgument("model_path", default_value="", description="empty = shipped default weights"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto|tensorrt|onnxruntime|torch"),
        DeclareLaunchArgument("precision", default_value="fp32",
                              description="fp32|fp16|int8 (int8: the image backbone, ONNX Runtime on the CPU)"),
        DeclareLaunchArgument("keypoints_source", default_value="topic",
                              description="topic = read a 2D detector's keypoints; builtin = camera alone (the node "
                              "detects people and publishes them on the keypoints topic)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz2 with config/rviz"),
        DeclareLaunchArgument("dds_profile", default_value=dds_profile,
                              description="Fast DDS XML profile (default: a shared-memory segment for large frames)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
        Node(
            package="lbi_ros",
            executable="lift_node",
            name="lbi_lifter",
            output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"model_path": LaunchConfiguration("model_path"),
                         "backend": LaunchConfiguration("backend"),
                         "precision": LaunchConfiguration("precision"),
                         "keypoints_source": LaunchConfiguration("keypoints_source")}],
            remappings=[("image", LaunchConfiguration("image")),
                        ("camera_info", LaunchConfiguration("camera_info")),
                        ("keypoints_2d", LaunchConfiguration("keypoints"))],
        ),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

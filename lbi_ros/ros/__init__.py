"""The ROS 2 layer: the only place that imports rclpy or message types.

Submodules import rclpy themselves; importing this package alone does not, so helpers that only
prepare a ROS process environment (:mod:`lbi_ros.ros.environment`) stay usable without ROS.
"""

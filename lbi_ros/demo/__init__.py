"""The one-command demo's core half: a small shipped motion clip, the scene it plays in, and its report.

The ROS half (player, recorder, process orchestration) lives in :mod:`lbi_ros.ros.tools.demo`.
"""

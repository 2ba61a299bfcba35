"""QoS profiles handed out as fresh copies.

rclpy's QoS overriding (``QoSOverridingOptions``) writes the overridden policies *into the profile
object it was given*. Passing the shared ``rclpy.qos.qos_profile_sensor_data`` would therefore leak an
override of one topic (say ``/image`` made reliable) into every later endpoint created with the same
object (``camera_info`` silently became reliable and stopped matching best-effort cameras).
"""

from __future__ import annotations

from rclpy.qos import QoSProfile, qos_profile_sensor_data


def sensor_qos() -> QoSProfile:
    """A private copy of the sensor-data profile (best effort, keep last 5)."""
    p = qos_profile_sensor_data
    return QoSProfile(history=p.history, depth=p.depth, reliability=p.reliability, durability=p.durability)

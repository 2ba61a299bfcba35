"""QoS profiles handed out as fresh copies.

rclpy's QoS overriding (``QoSOverridingOptions``) writes the overridden policies *into the profile
object it was given*. Passing the shared ``rclpy.qos.qos_profile_sensor_data`` would therefore leak an
override of one topic (say ``/image`` made reliable) into every later endpoint created with the same
object (``camera_info`` silently became reliable and stopped matching best-effort cameras).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data


def sensor_qos() -> QoSProfile:
    """A private copy of the sensor-data profile (best effort, keep last 5)."""
    p = qos_profile_sensor_data
    return QoSProfile(history=p.history, depth=p.depth, reliability=p.reliability, durability=p.durability)


def keypoints_qos() -> QoSProfile:
    """The 2D keypoint input: best effort, keep last 10.

    A best-effort subscription matches publishers of *both* reliabilities (DDS's request-vs-offered rule:
    a reliable publisher offers at least what best effort asks), while a reliable subscription silently
    never connects to a best-effort detector (yolo_ros and many pose wrappers publish best effort). Over
    a healthy link a reliable publisher's samples still arrive; a lost keypoint message costs one frame,
    which the stamp synchroniser already handles (``sync_dropped_images``), and the loss is counted
    (``dds_lost_keypoints_2d``). Integrators who want reliable delivery override it by YAML
    (``qos_overrides./keypoints_2d.subscription.reliability: reliable``).
    """
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)

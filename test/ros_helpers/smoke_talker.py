"""Smoke-test publisher: a real rclpy node that publishes a Person2DArray and a TFMessage.

Run as its own process (``python smoke_talker.py SECONDS``) so the test crosses a process boundary
over DDS. It waits for a subscriber on each topic, then publishes at 20 Hz until the time is up or
it is interrupted.
"""

from __future__ import annotations

import sys
import time

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from lbi_ros.msg import Person2D, Person2DArray

JOINT_NAMES = ["nose", "left_eye", "right_eye"]


def make_keypoints(seq: int) -> Person2DArray:
    msg = Person2DArray()
    msg.header.stamp.sec = 1000 + seq
    msg.header.stamp.nanosec = 500
    msg.header.frame_id = "camera_optical_frame"
    msg.skeleton = "smoke3"
    msg.joint_names = JOINT_NAMES
    person = Person2D(id="person_7", score=0.875)
    person.u = [10.5, 20.25, 30.0]
    person.v = [1.0, 2.0, 3.0]
    person.confidence = [0.5, 1.0, 0.0]
    msg.people = [person]
    return msg


def make_tf(seq: int) -> TFMessage:
    tf = TransformStamped()
    tf.header.stamp.sec = 1000 + seq
    tf.header.frame_id = "camera_optical_frame"
    tf.child_frame_id = "body_person_7"
    tf.transform.translation.x = 0.25
    tf.transform.translation.z = 3.5
    tf.transform.rotation.w = 1.0
    return TFMessage(transforms=[tf])


def main() -> int:
    seconds = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("lbi_smoke_talker")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    kp_pub = node.create_publisher(Person2DArray, "keypoints_2d", reliable)
    tf_pub = node.create_publisher(TFMessage, "/tf", reliable)
    deadline = time.monotonic() + seconds
    seq = 0
    try:
        while time.monotonic() < deadline:
            if kp_pub.get_subscription_count() and tf_pub.get_subscription_count():
                kp_pub.publish(make_keypoints(seq))
                tf_pub.publish(make_tf(seq))
                seq += 1
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

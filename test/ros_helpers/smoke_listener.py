"""Smoke-test subscriber: waits for one Person2DArray and one TFMessage, writes them as JSON.

``python smoke_listener.py OUT.json TIMEOUT_S``: exit 0 once both arrived, exit 3 if the timeout
passes first (so a test built on it fails when nothing crosses DDS).
"""

from __future__ import annotations

import json
import os
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from lbi_ros.msg import Person2DArray


def main() -> int:
    out_path, timeout = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("lbi_smoke_listener")
    got: dict = {}

    def on_keypoints(msg: Person2DArray) -> None:
        p = msg.people[0]
        got.setdefault("keypoints", {
            "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec], "frame_id": msg.header.frame_id,
            "skeleton": msg.skeleton, "joint_names": list(msg.joint_names), "id": p.id, "score": p.score,
            "u": list(p.u), "v": list(p.v), "confidence": list(p.confidence),
        })

    def on_tf(msg: TFMessage) -> None:
        t = msg.transforms[0]
        got.setdefault("tf", {
            "frame_id": t.header.frame_id, "child": t.child_frame_id,
            "xyz": [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],
            "w": t.transform.rotation.w,
        })

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Person2DArray, "keypoints_2d", on_keypoints, reliable)
    node.create_subscription(TFMessage, "/tf", on_tf, reliable)
    deadline = time.monotonic() + timeout
    try:
        while len(got) < 2 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    got["pid"] = os.getpid()
    got["env"] = {k: os.environ.get(k) for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR")}
    with open(out_path, "w") as f:
        json.dump(got, f)
    return 0 if len(got) == 4 else 3


if __name__ == "__main__":
    sys.exit(main())

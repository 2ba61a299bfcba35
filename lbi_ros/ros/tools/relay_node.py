"""A bare relay with the lifter's inputs and pairing but no lifting: the baseline of node-added latency.

Subscribes to ``image``, ``camera_info`` and ``keypoints_2d`` with the lifter's QoS, pairs them with
the same :class:`StampSynchronizer`, and republishes a ``Skeleton3DArray`` carrying the image header
on ``skeletons_3d``, built by the node's own :func:`skeletons_msg` with one all-zero H36M-17 skeleton
per input person, so its payload (and its construction and serialisation cost) is the lifter's. Run
beside the lifter on the same inputs, the per-frame difference of the two end-to-end latencies is what
lifting adds; the rest is DDS transport of the image between processes.

``python -m lbi_ros.ros.tools.relay_node --ros-args -r __node:=lbi_relay -r skeletons_3d:=relay/skeletons_3d``
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image

from lbi_ros.msg import Person2DArray, Skeleton3DArray
from lbi_ros.pipeline import PersonLift
from lbi_ros.ros.messages import skeletons_msg, stamp_ns
from lbi_ros.ros.qos import sensor_qos
from lbi_ros.ros.synchronizer import StampSynchronizer
from lbi_ros.skeleton import H36M17


def placeholder_people(keypoints: Person2DArray) -> list[PersonLift]:
    """One all-zero H36M-17 person per input person: the lifter's output payload, without lifting."""
    joints = H36M17.num_joints
    return [PersonLift(p.id, float(p.score), np.zeros((joints, 3)), np.zeros((joints, 3)), np.zeros(joints),
                       np.zeros(joints), np.ones(joints, bool), np.zeros(3), 0.0, 0.0) for p in keypoints.people]


class RelayNode(Node):
    def __init__(self) -> None:
        super().__init__("lbi_relay")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.sync: StampSynchronizer[Image, Person2DArray] = StampSynchronizer(0.02, 10)
        self.create_subscription(Image, "image", self._on_image, sensor_qos(),
                                 qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self.create_subscription(CameraInfo, "camera_info", lambda _msg: None, sensor_qos())
        self.create_subscription(Person2DArray, "keypoints_2d", self._on_keypoints, reliable)
        self.pub = self.create_publisher(Skeleton3DArray, "skeletons_3d", reliable)

    def _on_image(self, msg: Image) -> None:
        self._relay(self.sync.add_image(stamp_ns(msg.header), msg))

    def _on_keypoints(self, msg: Person2DArray) -> None:
        self._relay(self.sync.add_keypoints(stamp_ns(msg.header), msg))

    def _relay(self, match) -> None:
        if match is not None:
            self.pub.publish(skeletons_msg(match.image.header, H36M17.joint_names, H36M17.parents,
                                           placeholder_people(match.keypoints)))


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = RelayNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

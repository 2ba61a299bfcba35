"""The node over real DDS with an ``lbi_gated`` checkpoint (``model_path:=<gated ckpt>``): it cuts the shared
square crop and publishes skeletons; with closed gates they are the 2D-only lifter's (baseline-2d's)."""

from __future__ import annotations

import pytest

from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros
from .test_gated_runtime import gated_from_baseline
from .test_node import latest_counters, spin_until
from .test_node_io import assert_matches_pipeline, publish_until_lifted

pytestmark = [pytest.mark.ros, requires_ros]


def test_node_publishes_skeletons_from_a_gated_checkpoint(tmp_path, ros_domain, ros_log_dir):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from lbi_ros.demo.scene import DemoScene
    from lbi_ros.msg import Person2DArray, Skeleton3DArray

    ckpt = gated_from_baseline(tmp_path / "gated.safetensors")
    lifter = popen_ros(["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"model_path:={ckpt}",
                        "-p", "backend:=torch", "-p", "diagnostics_period:=0.2", "-p", "max_input_age:=0.0",
                        "-p", "tf_max_rate:=0.0", "-p", "qos_overrides./image.subscription.reliability:=reliable"],
                       ros_domain, ros_log_dir)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("lbi_node_gated_client", context=context)
    try:
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        got: dict[str, list] = {"skeletons": [], "diagnostics": []}
        node.create_subscription(Skeleton3DArray, "skeletons_3d", got["skeletons"].append, reliable)
        node.create_subscription(DiagnosticArray, "/diagnostics", got["diagnostics"].append, 10)
        pubs = {"image": node.create_publisher(Image, "image", reliable),
                "info": node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data),
                "kp": node.create_publisher(Person2DArray, "keypoints_2d", reliable)}
        assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                          and node.count_publishers("skeletons_3d") > 0 and latest_counters(got["diagnostics"]), 90)
        frame = DemoScene(2, seed=3).frame(30)
        _, msg = publish_until_lifted(node, pubs, got, frame, timeout_s=15)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        lifter.terminate()
        lifter.wait(timeout=20)
    assert_matches_pipeline(msg, frame, "baseline-2d")  # closed gates: exactly the 2D-only lifter

"""The node over real DDS with an ``lbi_gated`` checkpoint (``model_path:=<gated ckpt>``): it cuts the shared
square crop and publishes skeletons; with closed gates they are the 2D-only lifter's (baseline-2d's)."""

from __future__ import annotations

import numpy as np
import pytest

from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros
from .test_gated_runtime import gated_from_baseline
from .test_node import latest_counters, spin_until
from .test_node_io import outputs_at, publish_frame

pytestmark = [pytest.mark.ros, requires_ros]


def test_node_publishes_skeletons_from_a_gated_checkpoint(tmp_path, ros_domain, ros_log_dir):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from lbi_ros.demo.scene import INTRINSICS, DemoScene
    from lbi_ros.input_checks import PersonKeypoints
    from lbi_ros.msg import Person2DArray, Skeleton3DArray
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.runtime.factory import create_backend

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
        sec = 100
        for attempt in range(5):
            publish_frame(pubs, frame, sec + attempt)
            if spin_until(node, lambda s=sec + attempt: outputs_at(got, "skeletons", s), 15):
                sec += attempt
                break
        msgs = outputs_at(got, "skeletons", sec)
        assert msgs, f"no skeletons; node counters: {latest_counters(got['diagnostics'])}"
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        lifter.terminate()
        lifter.wait(timeout=20)
    expected = LiftingPipeline(create_backend("baseline-2d", "torch")).lift(
        frame.image_rgb, INTRINSICS, [PersonKeypoints(pid, 0.9, kp.astype(np.float64))
                                      for pid, kp in zip(frame.person_ids, frame.keypoints_px, strict=True)],
        "h36m17")
    assert [s.id for s in msgs[0].skeletons] == [p.person_id for p in expected.people] == list(frame.person_ids)
    for skeleton, person in zip(msgs[0].skeletons, expected.people, strict=True):
        positions = np.array([[p.x, p.y, p.z] for p in skeleton.positions])
        np.testing.assert_allclose(positions, person.joints_cam_m, atol=1e-4)

"""Camera-only lifting over real DDS: ``keypoints_source:=builtin`` finds the people itself and lifts them.

The node gets the astronaut photo and a CameraInfo, nothing else, and must publish a Skeleton3DArray with
one person and the 2D people it found on ``keypoints_2d`` (Person2DArray, mediapipe33), both stamped
with the image. The lifter is the oracle of test/node_harness.py (the 2D stage is what is under test).
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import require_pose_models, requires_ros
from .node_harness import Client, start_lifter, stop

pytestmark = [pytest.mark.ros, requires_ros]
SIZE = (512, 512)


@pytest.fixture(scope="module")
def astronaut_rgb() -> np.ndarray:
    require_pose_models()
    import skimage.data

    return skimage.data.astronaut()  # (512, 512, 3) uint8 RGB


def test_builtin_keypoints_lift_a_camera_alone(oracle_onnx, astronaut_rgb, ros_domain, ros_log_dir, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from lbi_ros.msg import Person2DArray
    from lbi_ros.ros.image_conversion import rgb_to_image
    from lbi_ros.skeleton import MEDIAPIPE33

    log = tmp_path / "lifter.log"
    # a 786 KB frame: reliable (a best-effort frame over UDP fragments is easily lost under load)
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log, "keypoints_source:=builtin",
                        "qos_overrides./image.subscription.reliability:=reliable")
    client = Client(proc, log, "lbi_builtin_client")
    try:
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pub_image = client.node.create_publisher(Image, "image", reliable)
        found: dict[int, Person2DArray] = {}
        client.node.create_subscription(Person2DArray, "keypoints_2d",
                                        lambda m: found.__setitem__(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                                                                    m), reliable)
        assert client.until(lambda: client.diagnostics_seen > 0 or proc.poll() is not None, 90), "no diagnostics"
        assert proc.poll() is None, client.log_tail()
        assert client.until(lambda: pub_image.get_subscription_count() > 0, 30), "the node did not subscribe"
        assert client.node.count_subscribers("keypoints_2d") == 1, "builtin mode must not read keypoints_2d (1 = ours)"
        k = (500.0, 500.0, 255.5, 255.5)
        client.camera_info(size=SIZE, k=[k[0], 0.0, k[2], 0.0, k[1], k[3], 0.0, 0.0, 1.0])

        def send() -> int:
            stamp = client.now_ns()
            header = Header(frame_id="cam")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            pub_image.publish(rgb_to_image(astronaut_rgb, header))
            return stamp

        out = client.expect_output(send, attempts=3, timeout=15)
        stamp = out.header.stamp.sec * 10**9 + out.header.stamp.nanosec
        assert client.until(lambda: stamp in found, 5), "no Person2DArray for the lifted frame"
        people_2d = found[stamp]
        assert out.header.frame_id == people_2d.header.frame_id == "cam"
        assert len(out.skeletons) == 1 and len(people_2d.people) == 1, (out, people_2d)
        assert people_2d.skeleton == "mediapipe33" and list(people_2d.joint_names) == list(MEDIAPIPE33.joint_names)
        person = people_2d.people[0]
        assert out.skeletons[0].id == person.id and len(person.u) == 33
        nose = np.array([person.u[0], person.v[0]])
        assert np.linalg.norm(nose - [225.0, 125.0]) < 15, nose  # test/fixtures/astronaut_coco17.json
        assert all(0.0 <= c <= 1.0 for c in person.confidence)
        # per-stage latency and counters in /diagnostics
        assert client.until(lambda: "latency_detect_ms_median" in client.counters
                            and "latency_lift_ms_median" in client.counters, 10), client.counters
        assert "latency_landmarks_ms_median" in client.counters and client.count("people_detected") >= 1
        # a bad image is rejected with its reason, and nothing is published for it
        before = client.fresh_count("frames_rejected")
        bad = client.image(client.now_ns(), size=(320, 240), encoding="rgb8", step=100)  # step < width*3
        pub_image.publish(bad)
        assert client.until(lambda: client.count("frames_rejected") > before, 10), client.log_tail()
        assert client.count("bad_step") >= 1
    finally:
        client.close()
        code = stop(proc)
    assert code == 0, f"the node did not shut down cleanly ({code}):\n{log.read_text()[-3000:]}"


def test_lbi_launch_starts_a_camera_alone():
    from lbi_ros.cli.launch import node_command
    from lbi_ros.cli.main import build_parser

    args = build_parser().parse_args(["launch", "--camera", "/front", "--keypoints-source", "builtin"])
    command = node_command(args)
    assert "keypoints_source:=builtin" in command and "image:=/front/image_raw" in command
    assert not any("keypoints_source" in c for c in node_command(build_parser().parse_args(["launch"])))
    assert "precision:=int8" in node_command(build_parser().parse_args(["launch", "--precision", "int8"]))
    assert not any("precision" in c for c in node_command(build_parser().parse_args(["launch"])))

"""The lifter node's outputs over real DDS match the core pipeline called directly on the same input.

One node process with the shipped weights (torch backend, deterministic); this process publishes a
rendered demo frame and checks every output: skeletons (same numbers as LiftingPipeline), stamps and
frames, REP-155 TF names, markers (and their DELETEALL), diagnostics, and that keypoints whose image
never arrives are counted as dropped and produce nothing.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from lbi_ros.ros.environment import popen_ros

from .conftest import require, requires_ros
from .test_node import latest_counters, spin_until

pytestmark = [pytest.mark.ros, requires_ros]
FRAME_ID = "test_cam_optical_frame"


@pytest.fixture(scope="module")
def weights():
    from lbi_ros.weights import default_weights_path

    path = default_weights_path("default")
    require(path.is_file(), "shipped default weights are not in this checkout")
    return path


@contextlib.contextmanager
def lifter_and_client(model, ros_domain, ros_log_dir, name: str, outputs=("skeletons", "markers", "tf"),
                      backend: str = "torch", params: tuple[str, ...] = ()):
    """The lifter on ``model`` (``backend``, every frame kept: no input-age limit, no TF rate cap, a reliable image
    subscription; ``params``: more ``name:=value``) and a ready client: yields (client node, publishers, received
    messages by output name, plus ``diagnostics``). The lifter is stopped on exit, also when start-up fails."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from lbi_ros.msg import Person2DArray, Skeleton3DArray

    lifter = popen_ros(["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"model_path:={model}",
                        "-p", f"backend:={backend}", "-p", "diagnostics_period:=0.2", "-p", "max_input_age:=0.0",
                        "-p", "tf_max_rate:=0.0", "-p", "qos_overrides./image.subscription.reliability:=reliable",
                        *(arg for param in params for arg in ("-p", param))], ros_domain, ros_log_dir)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    try:  # a failed start-up must not leave the node process running
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        topics = {"skeletons": (Skeleton3DArray, "skeletons_3d", reliable),
                  "markers": (MarkerArray, "markers", reliable), "tf": (TFMessage, "/tf", QoSProfile(depth=100))}
        got: dict[str, list] = {key: [] for key in (*outputs, "diagnostics")}
        for key in outputs:
            msg_type, topic, qos = topics[key]
            node.create_subscription(msg_type, topic, got[key].append, qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", got["diagnostics"].append, 10)
        # 1 MB images over best-effort UDP get lost on a loaded machine: these tests want every frame, so the
        # image stream is reliable on both sides (the node through a QoS override, as an integrator would).
        pubs = {"image": node.create_publisher(Image, "image", reliable),
                "info": node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data),
                "kp": node.create_publisher(Person2DArray, "keypoints_2d", reliable)}
        assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                          and node.count_publishers("skeletons_3d") > 0 and latest_counters(got["diagnostics"]), 90)
        yield node, pubs, got
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        lifter.terminate()
        lifter.wait(timeout=20)


@pytest.fixture(scope="module")
def node_io(weights, ros_domain, ros_log_dir):
    with lifter_and_client(weights, ros_domain, ros_log_dir, "lbi_node_io_client") as started:
        yield started


def publish_frame(pubs, frame, sec: int, with_image: bool = True, people: bool = True) -> None:
    from std_msgs.msg import Header

    from lbi_ros.ros.image_conversion import rgb_to_image
    from lbi_ros.ros.tools.demo_player import camera_info, keypoints_msg

    header = Header(frame_id=FRAME_ID)
    header.stamp.sec, header.stamp.nanosec = sec, 250
    pubs["info"].publish(camera_info(header))
    if with_image:
        pubs["image"].publish(rgb_to_image(frame.image_rgb, header))
    msg = keypoints_msg(header, frame)
    if not people:
        msg.people = []
    pubs["kp"].publish(msg)


def outputs_at(got, key: str, sec: int) -> list:
    if key == "tf":
        return [m for m in got["tf"] if m.transforms and m.transforms[0].header.stamp.sec == sec]
    return [m for m in got[key] if m.header.stamp.sec == sec] if key == "skeletons" else [
        m for m in got[key] if m.markers and m.markers[0].header.stamp.sec == sec]


def publish_until_lifted(node, pubs, got, frame, timeout_s: float, first_sec: int = 100, attempts: int = 5):
    """Publish ``frame`` (stamp sec = first_sec, +1, ...) until the node answers it: (sec, its Skeleton3DArray).

    The first frame can be lost while the best-effort image stream settles, hence the resends."""
    for sec in range(first_sec, first_sec + attempts):
        publish_frame(pubs, frame, sec)
        if spin_until(node, lambda s=sec: outputs_at(got, "skeletons", s), timeout_s):
            return sec, outputs_at(got, "skeletons", sec)[0]
    raise AssertionError(f"no skeletons for the frame; node counters: {latest_counters(got['diagnostics'])}")


def assert_matches_pipeline(msg, frame, weights, atol_m: float = 1e-4, backend: str = "torch", **options) -> None:
    """``msg`` holds what ``LiftingPipeline`` gives for ``frame`` with ``weights`` (``backend``, ``options`` for
    ``create_backend``), person by person."""
    from lbi_ros.demo.scene import INTRINSICS
    from lbi_ros.input_checks import PersonKeypoints
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.runtime.factory import create_backend

    expected = LiftingPipeline(create_backend(weights, backend, **options)).lift(
        frame.image_rgb, INTRINSICS, [PersonKeypoints(pid, 0.9, kp.astype(np.float64))
                                      for pid, kp in zip(frame.person_ids, frame.keypoints_px, strict=True)],
        "h36m17")
    assert [s.id for s in msg.skeletons] == [p.person_id for p in expected.people] == list(frame.person_ids)
    for skeleton, person in zip(msg.skeletons, expected.people, strict=True):
        positions = np.array([[p.x, p.y, p.z] for p in skeleton.positions])
        np.testing.assert_allclose(positions, person.joints_cam_m, atol=atol_m)
        assert list(skeleton.valid) == person.valid.tolist()


def test_outputs_match_the_pipeline_called_directly(node_io, weights):
    from lbi_ros.demo.scene import DemoScene

    node, pubs, got = node_io
    frame = DemoScene(2, seed=3).frame(30)
    sec, msg = publish_until_lifted(node, pubs, got, frame, timeout_s=10)
    assert msg.header.frame_id == FRAME_ID and msg.header.stamp.nanosec == 250
    assert_matches_pipeline(msg, frame, weights)
    assert spin_until(node, lambda: outputs_at(got, "markers", sec) and outputs_at(got, "tf", sec), 10)
    markers = outputs_at(got, "markers", sec)[0].markers
    assert all(m.header.frame_id == FRAME_ID for m in markers)
    assert {m.ns for m in markers} == {f"lbi/{pid}" for pid in frame.person_ids}
    children = {t.child_frame_id for t in outputs_at(got, "tf", sec)[0].transforms}
    assert {"body_walker", "body_guide"} <= children and any(c.startswith("l_wrist_") for c in children)
    # REP-155: body_<id> under the camera frame, joint frames under their body_<id>
    parents = {t.child_frame_id: t.header.frame_id for t in outputs_at(got, "tf", sec)[0].transforms}
    assert all(parent == (FRAME_ID if child.startswith("body_") else f"body_{child.rsplit('_', 1)[1]}")
               for child, parent in parents.items())


def test_empty_person_list_deletes_all_markers(node_io):
    from visualization_msgs.msg import Marker

    from lbi_ros.demo.scene import DemoScene

    node, pubs, got = node_io
    frame = DemoScene(2, seed=3).frame(31)
    for sec in range(200, 205):
        publish_frame(pubs, frame, sec, people=False)
        if spin_until(node, lambda s=sec: outputs_at(got, "markers", s), 10):
            break
    markers = [m for msg in got["markers"] if msg.markers and msg.markers[0].header.stamp.sec >= 200
               for m in msg.markers]
    assert markers and all(m.action == Marker.DELETEALL for m in markers)
    empty = [m for m in got["skeletons"] if m.header.stamp.sec >= 200]
    assert empty and all(not m.skeletons for m in empty)


def test_keypoints_without_an_image_are_dropped_and_counted(node_io):
    from lbi_ros.demo.scene import DemoScene

    node, pubs, got = node_io
    frame = DemoScene(2, seed=3).frame(32)
    before = int(latest_counters(got["diagnostics"]).get("sync_dropped_keypoints", 0))
    publish_frame(pubs, frame, 300, with_image=False)  # the detector's output for an image that never comes
    time.sleep(0.2)
    for sec in range(301, 306):  # later good frames evict the orphan
        publish_frame(pubs, frame, sec)
        spin_until(node, lambda s=sec: outputs_at(got, "skeletons", s), 5)
    assert spin_until(node, lambda: int(latest_counters(got["diagnostics"]).get("sync_dropped_keypoints", 0))
                      > before, 20), latest_counters(got["diagnostics"])
    assert not outputs_at(got, "skeletons", 300)
    assert int(latest_counters(got["diagnostics"])["count_frames_published"]) >= 1

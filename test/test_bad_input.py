"""The bad-input matrix over real DDS, against ONE running lifter node process.

Every case sends a bad input and waits for its named counter in /diagnostics (and the warning in the
node's log); a rejected frame must get no Skeleton3DArray at all, a repaired one only the people and
joints that were sound. Then a good frame must come out right: the node stays up and keeps working.

The node runs an "oracle" lifter: a tiny ONNX graph with the lbi_ros I/O contract (ONNX Runtime) that
predicts the same standing pose for everyone. The good frame's 2D keypoints are that pose projected
at a known root, so its output must put the person exactly there: a real check of the published
values that does not depend on trained weights.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

from lbi_ros.geometry import Intrinsics
from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros
from .node_harness import (
    ROOT,
    K,
    assert_at,
    connected_client,
    good_person,
    keypoints_at,
    start_lifter,
)

pytestmark = [pytest.mark.ros, requires_ros, pytest.mark.bad_input]



@pytest.fixture(scope="module")
def client(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("lifter") / "lifter.log"
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_path)
    with connected_client(proc, log_path) as c:
        yield c


# -- keypoints --------------------------------------------------------------------------------------------
def test_nonfinite_keypoints_become_missing_joints(client):
    pid, score, kp = good_person("nan")
    kp[3, 0], kp[5, 1], kp[12, 0] = np.nan, np.inf, -np.inf
    stamps = client.expect_counted("bad_nonfinite_keypoint", lambda: client.send(people=[(pid, score, kp)]))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    (skeleton,) = out.skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [3, 5, 12]
    assert_at(skeleton, ROOT)  # the other 14 joints place the person exactly
    client.expect_good_frame()


def test_negative_and_out_of_image_keypoints_become_missing(client):
    pid, score, kp = good_person("outside")
    kp[2, 0], kp[6, 1], kp[9, :2] = -40.0, 5000.0, (1e30, -1e30)
    stamps = client.expect_counted("bad_keypoint_out_of_image", lambda: client.send(people=[(pid, score, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [2, 6, 9]
    assert_at(skeleton, ROOT)
    client.expect_good_frame()


def test_person_without_usable_joints_skipped_others_lifted(client):
    _, _, garbage = good_person()
    garbage[:, :2] = np.nan
    people = [("garbage", 0.9, garbage), good_person("good")]
    stamps = client.expect_counted("bad_too_few_joints", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["good"]
    assert_at(out.skeletons[0], ROOT)


def test_confidences_outside_unit_interval(client):
    pid, score, kp = good_person("conf")
    kp[1, 2], kp[4, 2], kp[7, 2] = 1.5, -0.3, np.nan
    stamps = client.expect_counted("bad_confidence_out_of_range", lambda: client.send(people=[(pid, score, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [1, 4, 7]
    assert all(0.0 <= c <= 1.0 for c in skeleton.confidence)
    client.expect_good_frame()


def test_score_outside_unit_interval_is_clipped(client):
    pid, _, kp = good_person("score")
    stamps = client.expect_counted("bad_score_out_of_range", lambda: client.send(people=[(pid, math.nan, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert skeleton.score == 0.0


def test_joint_names_count_not_matching(client):
    from lbi_ros.skeleton import H36M17

    client.expect_rejected("bad_joint_count_mismatch", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], joint_names=H36M17.joint_names[:15])))


def test_person_arrays_of_the_wrong_length_skip_that_person(client):
    pid, score, kp = good_person("short")
    people = [(pid, score, kp[:15]), good_person("good")]
    stamps = client.expect_counted("bad_joint_count_mismatch", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["good"]


def test_unknown_topology(client):
    client.expect_rejected("bad_unknown_skeleton", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], skeleton="openpose25")))


def test_joint_names_not_matching_the_skeleton(client):
    from lbi_ros.skeleton import H36M17

    names = list(H36M17.joint_names)
    names[1], names[4] = names[4], names[1]  # left/right hips swapped: every joint would be mislabelled
    client.expect_rejected("bad_joint_names_mismatch", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], joint_names=names)))


def test_empty_person_list_publishes_an_empty_array(client):
    stamps = client.expect_counted("empty_frames", lambda: client.send(people=[]))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert list(out.skeletons) == []
    client.expect_good_frame()


def test_duplicate_person_ids_keep_the_first(client):
    people = [good_person("dup"), good_person("dup", root=(-0.5, 0.0, 6.0))]
    stamps = client.expect_counted("bad_duplicate_person_id", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["dup"]
    assert_at(out.skeletons[0], ROOT)


def test_empty_person_id_gets_a_placeholder(client):
    stamps = client.expect_counted("bad_empty_person_id", lambda: client.send(people=[good_person("")]))
    assert [s.id for s in client.expect_output(lambda: stamps[-1], attempts=1).skeletons] == ["idx0"]


def test_hundred_people_lifts_the_best_scored(client):
    roots = [(x, 0.0, 5.0 + (i % 5)) for i, x in enumerate(np.linspace(-1.2, 1.2, 100))]
    people = [good_person(f"p{i}", root=r, score=(i + 1) / 100) for i, r in enumerate(roots)]
    stamps = client.expect_counted("bad_people_over_limit", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert sorted(s.id for s in out.skeletons) == sorted(f"p{i}" for i in range(84, 100))  # max_people = 16
    for skeleton in out.skeletons:
        assert_at(skeleton, roots[int(skeleton.id[1:])])
    client.expect_good_frame()


def test_absurd_people_count_rejected(client):
    from lbi_ros.msg import Person2D

    person = Person2D(id="x", score=0.5, u=[1.0] * 17, v=[1.0] * 17, confidence=[0.5] * 17)
    client.expect_rejected("bad_too_many_people", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [person] * 1001)))


# -- images -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(0, 0), (1, 1)], ids=["0x0", "1x1"])
def test_degenerate_image(client, size):
    client.expect_rejected("bad_image_too_small", lambda: client.send(
        image=lambda s: client.image(s, size=size)))



PUBLISH_8K = """
import json, sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from lbi_ros.msg import Person2D, Person2DArray
k, (w, h), uv = json.loads(sys.argv[1])
rclpy.init()
node = rclpy.create_node("lbi_8k_camera")
pub_info = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
pub_image = node.create_publisher(Image, "image", qos_profile_sensor_data)
pub_kp = node.create_publisher(Person2DArray, "keypoints_2d", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 20
while pub_image.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
image = Image(width=w, height=h, encoding="mono8", step=w)
image.data = bytes(w * h)
for _ in range(int(sys.argv[2])):
    header = Header(frame_id="cam8k", stamp=node.get_clock().now().to_msg())
    pub_info.publish(CameraInfo(header=header, width=w, height=h, k=k))
    time.sleep(0.3)
    image.header = header
    pub_image.publish(image)
    pub_kp.publish(Person2DArray(header=header, skeleton="h36m17", people=[Person2D(
        id="good", score=0.9, u=[p[0] for p in uv], v=[p[1] for p in uv], confidence=[0.9] * 17)]))
    time.sleep(2.0)
node.destroy_node()
rclpy.try_shutdown()
"""


def test_8k_image_is_lifted(client, ros_domain, ros_log_dir, tmp_path):
    """7680x4320 (mono8, 33 MB) from a camera process whose Fast DDS segment holds such frames."""
    size = (7680, 4320)
    k8 = Intrinsics(6000.0, 6000.0, 3840.0, 2160.0)
    from lbi_ros.ros.dds_shm import write_large_frames_profile

    profile = write_large_frames_profile(tmp_path / "large_frames.xml", 48 << 20)
    frame = json.dumps([[k8.fx, 0, k8.cx, 0, k8.fy, k8.cy, 0, 0, 1], size, keypoints_at(ROOT, k8).tolist()])
    camera = popen_ros(["python", "-c", PUBLISH_8K, frame, "3"], ros_domain, ros_log_dir,
                       env={**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile)})
    try:
        assert client.until(lambda: any(o.header.frame_id == "cam8k" for o in client.outputs.values()), 60), \
            client.log_tail()
    finally:
        camera.kill()
        camera.wait(timeout=10)
    out = next(o for o in client.outputs.values() if o.header.frame_id == "cam8k")
    assert_at(out.skeletons[0], ROOT)
    client.expect_good_frame()


def test_image_above_the_size_limit(client):
    client.expect_rejected("bad_image_too_large", lambda: client.send(
        image=lambda s: client.image(s, size=(9000, 2), encoding="mono8", channels=1)))


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8", "nonsense"])
def test_unsupported_encoding(client, encoding):
    client.expect_rejected("bad_unsupported_encoding", lambda: client.send(
        image=lambda s: client.image(s, encoding=encoding, channels=2)))


def test_step_smaller_than_a_row(client):
    client.expect_rejected("bad_step", lambda: client.send(
        image=lambda s: client.image(s, step=320, data=bytes(320 * 240))), warning="bad_step")


def test_data_shorter_than_step_times_height(client):
    client.expect_rejected("bad_data_length", lambda: client.send(
        image=lambda s: client.image(s, data=bytes(320 * 3 * 239))), warning="bad_data_length")


def test_image_not_the_size_of_its_camera_info(client):
    client.expect_rejected("bad_camera_info_size_mismatch", lambda: client.send(
        image=lambda s: client.image(s, size=(160, 120))))


@pytest.mark.parametrize("encoding, channels, itemsize, bigendian", [
    ("bgr8", 3, 1, False), ("bgra8", 4, 1, False), ("rgba8", 4, 1, False), ("mono8", 1, 1, False),
    ("mono16", 1, 2, False), ("mono16", 1, 2, True),
], ids=["bgr8", "bgra8", "rgba8", "mono8", "mono16-le", "mono16-be"])
def test_other_encodings_are_lifted(client, encoding, channels, itemsize, bigendian):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, 320 * 240 * channels * itemsize, dtype=np.uint8).tobytes()
    out = client.expect_output(lambda: client.send(image=lambda s: client.image(
        s, encoding=encoding, channels=channels, itemsize=itemsize, bigendian=bigendian, data=data)))
    assert_at(out.skeletons[0], ROOT)


# -- stamps -----------------------------------------------------------------------------------------------
def test_zero_stamp(client):
    client.expect_rejected("bad_zero_stamp", lambda: client.send(stamp=0))


def test_stamp_far_in_the_past(client):
    client.expect_rejected("bad_stale_input", lambda: client.send(stamp=time.time_ns() - 3600 * 10**9))


def test_stamp_in_the_future(client):
    client.expect_rejected("bad_future_stamp", lambda: client.send(stamp=time.time_ns() + 3600 * 10**9))


def test_stamps_going_backwards(client):
    client.expect_good_frame()
    last = max(client.outputs)
    client.expect_rejected("bad_stamp_backwards", lambda: client.send(stamp=last - 100_000_000))


# -- camera model ---------------------------------------------------------------------------------------------
def test_missing_camera_info(client):
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="never_calibrated"))


@pytest.mark.parametrize("k", [[0.0, 0, 320, 0, 500, 240, 0, 0, 1], [-500.0, 0, 320, 0, -500, 240, 0, 0, 1],
                               [500.0, 0, 320, 0, math.nan, 240, 0, 0, 1], [500.0, 0, 320, 0, 500, 240, 0, 0, 0]],
                         ids=["zero-focal", "negative-focal", "nan", "not-a-camera-matrix"])
def test_invalid_intrinsics(client, k, request):
    frame = f"cam_{request.node.callspec.id}"
    client.camera_info(frame, k=k, expect_bad="bad_camera_info")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id=frame))


def test_unsupported_distortion_model(client):
    client.camera_info("cam_weird", d=[0.1, 0.0, 0.0, 0.0], model="kannala_brandt_9", expect_bad="bad_unsupported_distortion")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="cam_weird"))


def test_distortion_with_the_wrong_coefficient_count(client):
    client.camera_info("cam_d3", d=[0.1, 0.01, 0.001], expect_bad="bad_camera_info")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="cam_d3"))


@pytest.mark.parametrize("model, d", [("plumb_bob", [-0.35, 0.12, 0.001, -0.002, 0.0]),
                                      ("rational_polynomial", [-0.3, 0.08, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0]),
                                      ("equidistant", [0.05, -0.02, 0.005, 0.0])])
def test_distorted_camera_keypoints_are_undistorted(client, model, d):
    import cv2

    frame, root = f"cam_{model}", (0.8, 0.2, 3.0)  # off-centre, where the lens bends the most
    client.camera_info(frame, d=d, model=model)
    kmat, dist = K.matrix(), np.asarray(d, np.float64)

    def distort(uv: np.ndarray) -> np.ndarray:
        rays = np.column_stack([(uv - [K.cx, K.cy]) / [K.fx, K.fy], np.ones(len(uv))])[:, None, :]
        if model == "equidistant":
            return cv2.fisheye.projectPoints(rays, np.zeros(3), np.zeros(3), kmat, dist)[0].reshape(-1, 2)
        return cv2.projectPoints(rays, np.zeros(3), np.zeros(3), kmat, dist)[0].reshape(-1, 2)

    person = good_person(root=root, distort=distort)
    assert np.abs(person[2][:, :2] - keypoints_at(root)).max() > 2.0  # the distortion is not negligible
    out = client.expect_output(lambda: client.send(frame_id=frame, people=[person]))
    assert_at(out.skeletons[0], root, tol=5e-3)


# -- synchronisation ------------------------------------------------------------------------------------------
def test_keypoints_for_an_image_that_never_arrives(client):
    stamps = client.expect_counted("sync_dropped_keypoints", lambda: (
        s := client.send(send_image=False), client.send(), s)[-1])
    client.expect_good_frame()
    assert not set(stamps) & set(client.outputs)
    assert "[sync_dropped_keypoints]" in client.log_path.read_text()


def test_image_without_keypoints(client):
    stamps = client.expect_counted("sync_dropped_images", lambda: (
        s := client.send(send_keypoints=False), client.send(), s)[-1])
    client.expect_good_frame()
    assert not set(stamps) & set(client.outputs)


def test_lost_image_at_a_high_rate_never_pairs_neighbours(client):
    """At 120 Hz frames are 8.3 ms apart, inside the default 20 ms slop: when one image is lost, its
    keypoints must not be paired with the next image (a false frame); the slop shrinks with the frame interval."""
    period = 1_000_000_000 // 120
    base = client.now_ns()
    for k in range(5):  # an established 120 Hz stream
        client.send(stamp=base + k * period)
    orphan, stamp = base + 5 * period, base + 6 * period
    client._last_stamp = stamp
    before = client.fresh_count("sync_dropped_keypoints")
    _, _, wrong = good_person("wrong", root=(-0.6, 0.0, 5.0))
    client.send(stamp=orphan, people=[("wrong", 0.9, wrong)], send_image=False)  # its image is "lost"
    client.until(lambda: False, 0.3)
    out = client.expect_output(lambda: client.send(stamp=stamp), attempts=1)
    assert [s.id for s in out.skeletons] == ["good"] and orphan not in client.outputs
    assert_at(out.skeletons[0], ROOT)
    assert client.until(lambda: client.count("sync_dropped_keypoints") > before, 10)
    assert float(client.counters["sync_effective_slop_ms"]) < 4.0
    client.until(lambda: False, 0.5)
    client.expect_good_frame()


# -- parameters -----------------------------------------------------------------------------------------------
def test_runtime_parameters_out_of_range_rejected_with_a_reason(client):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(client.node, "lbi_lifter")
    assert params.wait_for_services(timeout_sec=30)
    before = client.fresh_count("rejected_parameters")
    bad = [Parameter("max_people", value=0), Parameter("sync_slop", value=math.nan),
           Parameter("min_joint_confidence", value=1.5), Parameter("max_stamp_ahead", value=-1.0)]
    future = params.set_parameters(bad)
    assert client.until(future.done, 20)
    results = future.result().results
    assert not any(r.successful for r in results)
    for parameter, result in zip(bad, results, strict=True):
        assert parameter.name in result.reason, result.reason
    assert client.until(lambda: client.count("rejected_parameters") >= before + len(bad), 10)
    future = params.set_parameters([Parameter("fallback_backends", value=["torch"])])  # read-only at runtime
    assert client.until(future.done, 20) and not future.result().results[0].successful
    client.expect_good_frame()



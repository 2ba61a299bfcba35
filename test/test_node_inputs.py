"""Inputs people actually have, and where the node puts its outputs (issue 14, items 4-6).

* Distorted cameras: the node's frame path (real ROS messages, the real ONNX Runtime backend) crops the
  raw image through the lens, so the crop the model sees is the pinhole crop.
* TF: ``body_<id>`` under the camera frame, REP-155 joint frames under ``body_<id>``; person ids that
  sanitise alike get distinct frames; a ``/``-prefixed frame id is fixed and counted, an empty one
  rejected and counted (real DDS, one lifter process).
* Keypoints: COCO dataset joint names accepted for coco17; best-effort *and* reliable detector
  publishers both get answers; ``min_joint_confidence`` changed at run time applies at once, to the
  checks, the crop and the ``valid`` flags alike (real DDS).
* ROS4HRI ``hri_msgs/Skeleton2D``: the conversion and the per-stamp batching are pure functions tested
  with stand-in message objects (``hri_msgs`` is not on PyPI, so it is not installed here); without
  ``hri_msgs`` the option stops the node at start-up with one clear line (a real process).
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lbi_ros.lens import LensDistortion
from lbi_ros.ros.environment import popen_ros
from lbi_ros.skeleton import COCO17, COCO18, H36M17

from .conftest import require_module, requires_ros
from .node_harness import NODE, ROOT, assert_at, connected_client, good_person, keypoints_at, start_lifter

pytestmark = [requires_ros]


# -- distorted cameras through the node's frame path (real messages, no DDS) -------------------------------------
def test_node_frame_path_crops_distorted_images_through_the_lens(oracle_onnx, monkeypatch):
    """A raw image from a strong plumb_bob lens and distorted keypoints go in; the crop handed to the backend
    must match what a pinhole camera sees (mean abs difference < 1.5 grey levels; a raw cut is ~40 off)."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    import lbi_ros.pipeline
    from lbi_ros.input_checks import InputLimits, StampPolicy
    from lbi_ros.model import ModelConfig, build_model
    from lbi_ros.msg import Person2D, Person2DArray
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.preprocess import CropConfig, compute_crop_box, denormalize_image, warp_crop
    from lbi_ros.ros.frame_processor import FrameProcessor
    from lbi_ros.ros.image_conversion import rgb_to_image
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.runtime.torch_backend import TorchBackend

    from .test_preprocess import LENSES, WIDE, _distorted_render, _pinhole_crop

    lens = LensDistortion("plumb_bob", LENSES["plumb_bob"])
    seen: list = []  # the model inputs the pipeline built
    prepare = lbi_ros.pipeline.prepare_inputs
    monkeypatch.setattr(lbi_ros.pipeline, "prepare_inputs", lambda *a, **k: (seen.append(b := prepare(*a, **k)), b)[1])
    def frame_processor(backend):
        processor = FrameProcessor(LiftingPipeline(backend), InputLimits(), StampPolicy(max_age_s=0, max_ahead_s=0))
        assert processor.cameras.update(info) is None
        return processor

    info = CameraInfo(header=Header(frame_id="wide"), width=640, height=480, distortion_model="plumb_bob",
                      k=[WIDE.fx, 0.0, WIDE.cx, 0.0, WIDE.fy, WIDE.cy, 0.0, 0.0, 1.0], d=list(LENSES["plumb_bob"]))
    root = np.array([1.2, 0.3, 4.0])  # right of the axis, where the lens bends most
    ideal = keypoints_at(root, WIDE)
    raw_uv = lens.distort(np.stack([(ideal[:, 0] - WIDE.cx) / WIDE.fx, (ideal[:, 1] - WIDE.cy) / WIDE.fy], -1), WIDE)
    header = Header(frame_id="wide")
    header.stamp.sec = 5
    keypoints = Person2DArray(header=header, skeleton="h36m17", joint_names=list(H36M17.joint_names), people=[
        Person2D(id="p", score=0.9, u=raw_uv[:, 0].tolist(), v=raw_uv[:, 1].tolist(), confidence=[0.9] * 17)])
    raw = _distorted_render(lens)
    result = frame_processor(create_backend(oracle_onnx, "onnxruntime")).process(rgb_to_image(raw, header), keypoints,
                                                                               now_ns=0)
    assert result.people is not None and len(result.people) == 1, result.problems
    assert np.allclose(result.people[0].root_cam_m, root, atol=5e-3)  # keypoints were undistorted
    # the oracle reads no image, so no crop is cut for it: the crop check runs a (random-weight) LBI that reads one
    torch.manual_seed(0)
    lbi = build_model(ModelConfig(dim=32, num_heads=2, depth_stage1=2, pgtl_layer=0, depth_stage2=1))
    frame_processor(TorchBackend(lbi)).process(rgb_to_image(raw, header), keypoints, now_ns=0)
    cfg = CropConfig()
    crop_box = seen[-1].boxes[0]  # the box of the undistorted keypoints (not of the raw ones)
    pinhole_box = compute_crop_box(np.column_stack([ideal, np.full(17, 0.9)]), cfg)
    np.testing.assert_allclose(crop_box.as_array(), pinhole_box.as_array(), atol=1e-3)
    got = denormalize_image(seen[-1].inputs.image_crop[0], cfg).astype(np.float64)
    reference = _pinhole_crop(crop_box)
    error_after = np.abs(got - reference).mean()
    error_before = np.abs(warp_crop(raw, crop_box, cfg).astype(np.float64) - reference).mean()
    print(f"node frame path crop error (mean abs, grey levels): raw cut {error_before:.2f}, through the lens {error_after:.2f}")
    assert error_after < 1.5 and error_before > 20.0, (error_before, error_after)


# -- one lifter process over real DDS ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("lifter_inputs") / "lifter.log"
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_path, "tf_max_rate:=0.0")
    with connected_client(proc, log_path, name="lbi_node_inputs_client") as c:
        yield c


def _listen_tf(client) -> list:
    from rclpy.qos import QoSProfile
    from tf2_msgs.msg import TFMessage

    if not hasattr(client, "tf_messages"):
        client.tf_messages = []
        client.node.create_subscription(TFMessage, "/tf", client.tf_messages.append, QoSProfile(depth=100))
    return client.tf_messages


def _tf_at(messages: list, stamp: int) -> list:
    return [t for m in messages for t in m.transforms
            if t.header.stamp.sec * 1_000_000_000 + t.header.stamp.nanosec == stamp]


@pytest.mark.ros
def test_tf_tree_is_rep155_and_ids_that_sanitise_alike_do_not_collide(client):
    messages = _listen_tf(client)
    assert client.until(lambda: client.pub_image.get_subscription_count() > 0, 5)
    client.until(lambda: False, 0.5)  # let the /tf subscription match
    people = [good_person("a/b"), good_person("a b", root=(-0.5, 0.0, 5.0)), good_person("ok")]
    out = client.expect_output(lambda: client.send(people=people))
    stamp = out.header.stamp.sec * 1_000_000_000 + out.header.stamp.nanosec
    assert client.until(lambda: len(_tf_at(messages, stamp)) >= 3 * 16, 10), "no TF for the frame"
    transforms = _tf_at(messages, stamp)
    bodies = {t.child_frame_id: t.header.frame_id for t in transforms if t.child_frame_id.startswith("body_")}
    assert len(bodies) == 3 and set(bodies.values()) == {"cam"} and "body_ok" in bodies
    for t in transforms:
        if not t.child_frame_id.startswith("body_"):
            assert t.header.frame_id in bodies and t.child_frame_id.endswith(t.header.frame_id.removeprefix("body"))
    assert {"l_wrist_ok", "head_ok", "torso_ok", "waist_ok"} <= {t.child_frame_id for t in transforms}
    assert not any(t.child_frame_id.startswith("/") or t.header.frame_id.startswith("/") for t in transforms)


@pytest.mark.ros
def test_frame_id_with_a_leading_slash_is_fixed_and_counted(client):
    stamps = client.expect_counted("bad_frame_id_leading_slash", lambda: client.send(frame_id="/cam"))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert out.header.frame_id == "cam" and [s.id for s in out.skeletons] == ["good"]
    assert_at(out.skeletons[0], ROOT)
    assert "[frame_id_leading_slash]" in client.log_path.read_text(errors="replace")


@pytest.mark.ros
def test_empty_frame_id_is_rejected_and_counted(client):
    client.expect_rejected("bad_empty_frame_id", lambda: client.send(frame_id=""))


@pytest.mark.ros
def test_coco_dataset_joint_names_are_accepted(client):
    """A COCO-17 detector that declares its joints with the COCO dataset's own names is lifted."""
    from lbi_ros.skeleton import COCO_DATASET_KEYPOINT_NAMES

    h36m = keypoints_at(ROOT)
    coco = np.zeros((17, 3))
    for name, source in {"nose": "neck_nose", "l_shoulder": "l_shoulder", "r_shoulder": "r_shoulder",
                         "l_elbow": "l_elbow", "r_elbow": "r_elbow", "l_wrist": "l_wrist", "r_wrist": "r_wrist",
                         "l_hip": "l_hip", "r_hip": "r_hip", "l_knee": "l_knee", "r_knee": "r_knee",
                         "l_ankle": "l_ankle", "r_ankle": "r_ankle"}.items():  # eyes and ears missing (conf 0)
        coco[COCO17.index(name)] = (*h36m[H36M17.index(source)], 0.9)
    out = client.expect_output(lambda: client.send(keypoints=lambda s: client.keypoints(
        s, [("coco", 0.9, coco)], skeleton="coco17", joint_names=COCO_DATASET_KEYPOINT_NAMES)))
    (skeleton,) = out.skeletons
    assert skeleton.id == "coco" and abs(skeleton.root.z - ROOT[2]) < 0.3  # mapped rules, not an exact oracle
    client.expect_rejected("bad_joint_names_mismatch", lambda: client.send(keypoints=lambda s: client.keypoints(
        s, [("coco", 0.9, coco)], skeleton="coco17", joint_names=[n.replace("left", "links")
                                                                   for n in COCO_DATASET_KEYPOINT_NAMES])))


@pytest.mark.ros
@pytest.mark.parametrize("reliability", ["best_effort", "reliable"])
def test_best_effort_and_reliable_detectors_both_get_answers(client, reliability):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from lbi_ros.msg import Person2DArray

    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    publisher = client.node.create_publisher(Person2DArray, "keypoints_2d", QoSProfile(depth=10, reliability=policy))
    try:
        assert client.until(lambda: publisher.get_subscription_count() > 0, 10), f"a {reliability} publisher never matched"
        before = client.fresh_count("qos_incompatible")

        def send() -> int:
            stamp = client.send(send_keypoints=False)
            publisher.publish(client.keypoints(stamp, [good_person(reliability)]))
            return stamp

        out = client.expect_output(send)
        assert [s.id for s in out.skeletons] == [reliability]
        assert_at(out.skeletons[0], ROOT)
        assert client.fresh_count("qos_incompatible") == before
    finally:
        client.node.destroy_publisher(publisher)


@pytest.mark.ros
def test_min_joint_confidence_changed_at_run_time_applies_everywhere(client):
    """Joints at confidence 0.03 are missing at the default threshold (0.05); lowered to 0.01 they must be
    usable *and* valid in the output (the checks, the crop and the valid flags use one threshold), from the
    very next frame; a refused value says why."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(client.node, "lbi_lifter")
    assert params.wait_for_services(timeout_sec=30)
    weak = [2, 5, 12, 15]  # knees and elbows
    pid, score, kp = good_person("weak")
    kp[weak, 2] = 0.03

    def set_threshold(value) -> object:
        future = params.set_parameters([Parameter("min_joint_confidence", value=value)])
        assert client.until(future.done, 20)
        return future.result().results[0]

    def valid_flags() -> list[bool]:
        out = client.expect_output(lambda: client.send(people=[(pid, score, kp)]))
        return list(out.skeletons[0].valid)

    try:
        assert [i for i, v in enumerate(valid_flags()) if not v] == weak
        assert set_threshold(0.01).successful
        assert all(valid_flags())  # at once: no diagnostics tick in between is needed
        refused = set_threshold(1.5)
        assert not refused.successful and "min_joint_confidence" in refused.reason
        assert all(valid_flags())  # the refused value changed nothing
    finally:
        assert set_threshold(0.05).successful
    assert [i for i, v in enumerate(valid_flags()) if not v] == weak


# -- ROS4HRI Skeleton2D ---------------------------------------------------------------------------------------------
def _skeleton2d(points_px: np.ndarray, width: int, height: int) -> SimpleNamespace:
    """A stand-in for hri_msgs/Skeleton2D: the same fields (header, skeleton[18] of x, y, c)."""
    return SimpleNamespace(header=SimpleNamespace(frame_id="cam"), skeleton=[
        SimpleNamespace(x=(u + 0.5) / width, y=(v + 0.5) / height, c=c) for u, v, c in points_px])


def test_hri_skeleton2d_conversion_to_pixels_in_coco18_order():
    from lbi_ros.ros.messages import HRI_JOINT_SET, keypoints_from_skeleton2d

    assert HRI_JOINT_SET is COCO18 and COCO18.joint_names[:3] == ("nose", "neck", "r_shoulder")
    assert COCO18.joint_names[14:] == ("l_eye", "r_eye", "l_ear", "r_ear")  # Skeleton2D's LEFT_EYE = 14 ...
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 639, 18), rng.uniform(0, 479, 18), rng.uniform(0, 1, 18)])
    points[3, 2] = 0.0  # a missing joint stays missing
    out = keypoints_from_skeleton2d(_skeleton2d(points, 640, 480).skeleton, 640, 480)
    np.testing.assert_allclose(out, points, atol=1e-9)
    # normalised (0, 0) is the image's top-left corner: pixel centre (-0.5, -0.5); (1, 1) the far corner
    corner = [SimpleNamespace(x=1.0, y=1.0, c=1.0)] + [SimpleNamespace(x=0.0, y=0.0, c=1.0)] * 17
    assert keypoints_from_skeleton2d(corner, 640, 480)[:2, :2].tolist() == [[639.5, 479.5], [-0.5, -0.5]]
    with pytest.raises(ValueError, match="18"):
        keypoints_from_skeleton2d(corner[:17], 640, 480)
    with pytest.raises(ValueError, match="size"):
        keypoints_from_skeleton2d(corner, 0, 480)


def test_hri_skeletons_of_one_image_become_one_person_array():
    from lbi_ros.ros.messages import SkeletonBatcher, person_array_msg

    batcher = SkeletonBatcher(max_pending=3)
    kp = np.column_stack([np.arange(18.0), np.arange(18.0), np.full(18, 0.8)])
    assert batcher.set_tracked(["b1", "b2"]) == []
    assert batcher.add("b1", 100, "cam", kp) == []  # b2 has not reported for stamp 100 yet
    (batch,) = batcher.add("b2", 100, "cam", kp + 1)  # complete: out at once
    assert batch.stamp_ns == 100 and sorted(batch.keypoints) == ["b1", "b2"]
    assert batcher.add("b1", 200, "cam", kp) == []
    (late,) = batcher.add("b1", 300, "cam", kp)  # b2 skipped 200: a newer stamp flushes it
    assert late.stamp_ns == 200 and list(late.keypoints) == ["b1"]
    (only,) = batcher.set_tracked(["b1"])  # b2 left: 300 is complete now
    assert only.stamp_ns == 300
    msg = person_array_msg(batch)
    assert msg.skeleton == "coco18" and list(msg.joint_names) == list(COCO18.joint_names)
    assert msg.header.stamp.nanosec == 100 and msg.header.frame_id == "cam"
    assert [p.id for p in msg.people] == ["b1", "b2"] and msg.people[0].score == pytest.approx(0.8)
    np.testing.assert_allclose(msg.people[1].u, kp[:, 0] + 1)


@pytest.mark.ros
def test_hri_input_without_hri_msgs_fails_clearly_at_start_up(oracle_onnx, ros_domain, ros_log_dir):
    require_module("rclpy")
    try:
        import hri_msgs  # noqa: F401
        pytest.skip("hri_msgs is installed here: the option starts")
    except ImportError:
        pass
    proc = popen_ros(NODE + ["-p", f"model_path:={oracle_onnx}", "-p", "backend:=onnxruntime",
                             "-p", "keypoints_input:=hri_skeleton2d"], ros_domain, ros_log_dir,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-2000:]
    assert "cannot start" in out and "hri_msgs" in out and "not on PyPI" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]


def test_hri_input_follows_tracked_bodies_and_hands_on_one_array_per_image(monkeypatch):
    """The rclpy glue with a stand-in hri_msgs module and node: a subscription per tracked body (dropped when
    the body leaves), points scaled by the camera's image size, one Person2DArray per stamp; a frame whose
    camera size is unknown is reported, not guessed."""
    import sys
    import types

    from lbi_ros.ros.messages import HriSkeletonInput

    hri = types.ModuleType("hri_msgs")
    hri.msg = SimpleNamespace(IdsList="IdsList", Skeleton2D="Skeleton2D")
    monkeypatch.setitem(sys.modules, "hri_msgs", hri)
    monkeypatch.setitem(sys.modules, "hri_msgs.msg", hri.msg)
    subscriptions: dict[str, tuple] = {}
    node = SimpleNamespace(
        create_subscription=lambda kind, topic, callback, qos: subscriptions.setdefault(topic, (kind, callback)) and topic,
        destroy_subscription=lambda topic: subscriptions.pop(topic))
    arrays, reports = [], []
    HriSkeletonInput(node, arrays.append, lambda frame: (640, 480) if frame == "cam" else None,
                     lambda *r: reports.append(r), qos=None)
    kind, on_tracked = subscriptions["/humans/bodies/tracked"]
    assert kind == "IdsList"
    on_tracked(SimpleNamespace(ids=["b1", "b2"]))
    assert {"/humans/bodies/b1/skeleton2d", "/humans/bodies/b2/skeleton2d"} <= set(subscriptions)
    points = np.column_stack([np.linspace(10, 600, 18), np.linspace(20, 400, 18), np.full(18, 0.7)])

    def skeleton(frame: str = "cam", nanosec: int = 7) -> SimpleNamespace:
        msg = _skeleton2d(points, 640, 480)
        msg.header = SimpleNamespace(frame_id=frame, stamp=SimpleNamespace(sec=3, nanosec=nanosec))
        return msg

    subscriptions["/humans/bodies/b1/skeleton2d"][1](skeleton())
    assert arrays == []  # b2 has not reported for this image yet
    subscriptions["/humans/bodies/b2/skeleton2d"][1](skeleton())
    (msg,) = arrays
    assert msg.skeleton == "coco18" and [p.id for p in msg.people] == ["b1", "b2"]
    assert msg.header.stamp.sec == 3 and msg.header.stamp.nanosec == 7 and msg.header.frame_id == "cam"
    np.testing.assert_allclose(msg.people[0].u, points[:, 0], atol=1e-6)
    on_tracked(SimpleNamespace(ids=["b1"]))
    assert "/humans/bodies/b2/skeleton2d" not in subscriptions
    subscriptions["/humans/bodies/b1/skeleton2d"][1](skeleton(frame="uncalibrated", nanosec=9))
    assert len(arrays) == 1 and reports[-1][0] == "hri_no_image_size"

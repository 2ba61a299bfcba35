"""BlazePose person-detector pipeline: anchors, decoding, weighted NMS, ROI rule, crops, tracker, end to end.

The pure parts are checked against MediaPipe's rules recomputed independently here (constants from
``pose_detection_cpu.pbtxt`` / ``pose_detection_to_roi.pbtxt``); the end-to-end test runs the converted
networks on scikit-image's astronaut photo against the project's hand annotation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.pose2d.anchors import (
    NUM_POSE_ANCHORS,
    Detections,
    decode_detections,
    generate_anchors,
    weighted_nms,
)
from lbi_ros.pose2d.detector import DetectorConfig, PersonDetector
from lbi_ros.pose2d.landmarks import OneEuroFilter, project_to_image, refine_from_heatmap, rotate_world
from lbi_ros.pose2d.roi import (
    Roi,
    crop_affine,
    crop_image,
    crop_to_image,
    image_to_crop,
    letterbox,
    letterbox_image,
    roi_from_alignment_points,
    roi_from_landmarks,
)
from lbi_ros.pose2d.topology import MEDIAPIPE33_OFFICIAL_NAMES, MEDIAPIPE33_TO_COCO17, mediapipe33_to_coco17
from lbi_ros.pose2d.tracker import PersonTracker, TrackerConfig
from lbi_ros.skeleton import COCO17, MEDIAPIPE33

from .conftest import require_module, require_pose_models

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut_coco17.json"

# ---------------------------------------------------------------------------------------------------------
# Anchors and decoding
# ---------------------------------------------------------------------------------------------------------


def test_anchor_count_and_layout_follow_mediapipe_rule():
    a = generate_anchors()
    assert a.shape == (NUM_POSE_ANCHORS, 4) == (2254, 4)
    assert np.all(a[:, 2:] == 1.0)  # fixed_anchor_size
    # Independent rule: stride 8 -> 28x28 cells x 2 anchors (scale + interpolated scale), centre (x+0.5)/28.
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28, 1, 1], atol=1e-7)
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28, 1, 1], atol=1e-7)  # next column
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28, 1, 1], atol=1e-7)  # next row
    # stride 16 starts after 28*28*2 anchors: 14x14 cells x 2.
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14, 1, 1], atol=1e-7)
    # the three stride-32 layers merge: 7x7 cells x 6 anchors; the last is the bottom-right cell.
    np.testing.assert_allclose(a[1568 + 392], [0.5 / 7, 0.5 / 7, 1, 1], atol=1e-7)
    np.testing.assert_allclose(a[1568 + 392 + 5], [0.5 / 7, 0.5 / 7, 1, 1], atol=1e-7)
    np.testing.assert_allclose(a[1568 + 392 + 6], [1.5 / 7, 0.5 / 7, 1, 1], atol=1e-7)
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7, 1, 1], atol=1e-7)


def _raw_for(anchor: np.ndarray, box_xywh: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """Inverse of MediaPipe's decoding for one anchor: raw (12,) in detector-input pixels."""
    raw = np.zeros(12, np.float32)
    raw[0:2] = (box_xywh[:2] - anchor[:2]) * 224 / anchor[2:]
    raw[2:4] = box_xywh[2:] * 224 / anchor[2:]
    raw[4:] = ((kps - anchor[:2]) * 224 / anchor[2:]).reshape(-1)
    return raw


def test_decoding_a_box_placed_on_a_known_anchor():
    anchors = generate_anchors()
    raw = np.zeros((2254, 12), np.float32)
    logits = np.full(2254, -10.0, np.float32)
    idx = 1568 + 14 * 2 * 5 + 2 * 7  # stride-16 layer, row 5, column 7
    box = np.array([0.55, 0.40, 0.20, 0.50])  # x_c, y_c, w, h normalised
    kps = np.array([[0.55, 0.55], [0.55, 0.20], [0.56, 0.30], [0.56, 0.22]])
    raw[idx] = _raw_for(anchors[idx], box, kps)
    logits[idx] = 2.0
    logits[idx + 1] = 0.1  # sigmoid 0.52: passes 0.5 ...
    logits[idx + 3] = -0.1  # ... 0.475 does not
    dets = decode_detections(raw, logits[:, None], anchors)
    assert len(dets) == 2
    i = int(np.argmax(dets.scores))
    np.testing.assert_allclose(dets.scores[i], 1 / (1 + math.exp(-2.0)), rtol=1e-6)
    np.testing.assert_allclose(dets.boxes[i], [0.45, 0.15, 0.65, 0.65], atol=1e-6)
    np.testing.assert_allclose(dets.keypoints[i], kps, atol=1e-6)
    # score clipping at +-100 keeps huge logits finite
    logits[idx] = 1e6
    assert np.isfinite(decode_detections(raw, logits, anchors).scores).all()
    with pytest.raises(ValueError, match="raw_boxes"):
        decode_detections(raw[:10], logits, anchors)


def _dets(boxes, scores, kps=None) -> Detections:
    boxes = np.asarray(boxes, np.float32)
    kps = np.zeros((len(boxes), 4, 2), np.float32) if kps is None else np.asarray(kps, np.float32)
    return Detections(boxes, kps, np.asarray(scores, np.float32))


def test_weighted_nms_averages_overlapping_boxes_and_keeps_separate_ones():
    kps = np.array([np.full((4, 2), 0.2), np.full((4, 2), 0.4), np.full((4, 2), 0.8)])
    d = _dets([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.6, 0.9, 0.7], kps)
    out = weighted_nms(d, 0.3)
    assert len(out) == 2
    np.testing.assert_allclose(out.scores, [0.9, 0.7])  # the top detection's own score
    w = np.array([0.9, 0.6]) / 1.5  # first cluster: top (index 1) then index 0
    np.testing.assert_allclose(out.boxes[0], w[0] * d.boxes[1] + w[1] * d.boxes[0], atol=1e-6)
    np.testing.assert_allclose(out.keypoints[0], np.full((4, 2), w[0] * 0.4 + w[1] * 0.2), atol=1e-6)
    np.testing.assert_allclose(out.boxes[1], d.boxes[2])
    # a box with IoU exactly at/below the threshold survives on its own
    far = _dets([[0, 0, 1, 1], [0.5, 0, 1.5, 1]], [0.9, 0.8])  # IoU = 1/3 > 0.3 -> merged
    assert len(weighted_nms(far, 0.3)) == 1
    assert len(weighted_nms(far, 0.34)) == 2
    assert len(weighted_nms(far, 0.3, max_detections=1)) == 1
    assert len(weighted_nms(_dets(np.zeros((0, 4)), []), 0.3)) == 0


# ---------------------------------------------------------------------------------------------------------
# ROI rule, letterbox, crops
# ---------------------------------------------------------------------------------------------------------


def test_roi_rule_upright_and_rotated_person():
    hip, top = np.array([300.0, 400.0]), np.array([300.0, 200.0])  # scale point 200 px above the hips
    roi = roi_from_alignment_points(hip, top)
    assert (roi.center_u, roi.center_v) == (300.0, 400.0)
    assert roi.size_px == pytest.approx(2 * 200 * 1.25)
    assert roi.rotation_rad == pytest.approx(0.0)
    # lying person, head to the image's right: the crop is turned +90 deg (clockwise on screen)
    roi_r = roi_from_alignment_points(hip, hip + [200.0, 0.0])
    assert roi_r.rotation_rad == pytest.approx(math.pi / 2)
    assert roi_r.size_px == pytest.approx(500.0)
    # the crop's "up" (0, -1) then points along hip -> scale point in the image
    np.testing.assert_allclose(roi_r.rotation_matrix() @ [0.0, -1.0], [1.0, 0.0], atol=1e-12)
    # upside down -> pi (normalised into [-pi, pi))
    assert roi_from_alignment_points(hip, hip + [0.0, 200.0]).rotation_rad == pytest.approx(-math.pi)
    # from landmarks: aux points 33 (hip centre) and 34 (scale point)
    lm = np.zeros((39, 5))
    lm[33, :2], lm[34, :2] = hip, top
    assert roi_from_landmarks(lm) == roi
    with pytest.raises(ValueError, match="degenerate"):
        roi_from_alignment_points(hip, hip)


@pytest.mark.parametrize("w,h", [(640, 480), (480, 640), (512, 512)])
def test_letterbox_round_trip_and_image_content(w, h):
    box = letterbox(w, h, 224)
    pts = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [w / 3, h / 2]])
    np.testing.assert_allclose(box.normalized_to_image(box.image_to_normalized(pts)), pts, atol=1e-9)
    # the image's outer edges land on the padding borders, centred
    edges = box.image_to_normalized(np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]]))
    np.testing.assert_allclose(edges[0] + edges[1], [1.0, 1.0], atol=1e-9)
    assert max(edges[1] - edges[0]) == pytest.approx(1.0)
    img = np.full((h, w, 3), 200, np.uint8)
    out = letterbox_image(img, box)
    assert out.shape == (224, 224, 3)
    assert out[112, 112, 0] == 200
    if w != h:  # zero padding where the frame is not
        assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 0


def test_crop_affine_round_trip_with_rotation_and_pixel_content():
    roi = Roi(center_u=210.0, center_v=150.0, size_px=180.0, rotation_rad=0.6)
    fwd, inv = crop_affine(roi, 256)
    np.testing.assert_allclose(fwd @ np.vstack([inv, [0, 0, 1]]), np.hstack([np.eye(2), np.zeros((2, 1))]), atol=1e-12)
    pts = np.random.default_rng(0).uniform(0, 400, size=(20, 2))
    np.testing.assert_allclose(crop_to_image(image_to_crop(pts, roi, 256), roi, 256), pts, atol=1e-9)
    np.testing.assert_allclose(crop_to_image(np.array([127.5, 127.5]), roi, 256), roi.center, atol=1e-9)
    # a marker in the image appears where image_to_crop says, rotation included
    img = np.zeros((300, 400, 3), np.uint8)
    marker = np.array([250.0, 110.0])
    img[108:113, 248:253] = 255
    crop = crop_image(img, roi, 256)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    np.testing.assert_allclose([xs.mean(), ys.mean()], image_to_crop(marker, roi, 256), atol=1.0)
    # landmark projection: model x/y are crop edge coordinates (pixel centre + 0.5)
    edge = image_to_crop(marker, roi, 256)[None, None] + 0.5
    np.testing.assert_allclose(project_to_image(edge, [roi])[0, 0], marker, atol=1e-9)


def test_world_rotation_and_heatmap_refinement():
    roi = Roi(0.0, 0.0, 10.0, math.pi / 2)
    w = rotate_world(np.array([[[1.0, 0.0, 0.3]]]), [roi])
    np.testing.assert_allclose(w[0, 0], [0.0, 1.0, 0.3], atol=1e-12)
    hm = np.full((1, 2, 64, 64), -20.0, np.float32)
    hm[0, 0, 10, 20] = hm[0, 0, 10, 22] = 20.0  # two peaks around cell (row 10, col 21)
    xy = np.array([[[21.3 / 64, 10.2 / 64], [0.5, 0.5]]], np.float32)
    out = refine_from_heatmap(xy, hm)
    np.testing.assert_allclose(out[0, 0], [21 / 64, 10 / 64], atol=1e-5)  # MediaPipe: cell index / 64
    np.testing.assert_allclose(out[0, 1], xy[0, 1])  # flat heatmap (peak < 0.5): unchanged


def test_topology_matches_skeleton_and_coco():
    assert MEDIAPIPE33_OFFICIAL_NAMES[1] == "left_eye_inner"
    assert MEDIAPIPE33_OFFICIAL_NAMES[9:11] == ("mouth_left", "mouth_right")
    assert MEDIAPIPE33_OFFICIAL_NAMES[-1] == "right_foot_index"
    kp = np.arange(33 * 3, dtype=np.float32).reshape(33, 3)
    coco = mediapipe33_to_coco17(kp)
    for ci, name in enumerate(COCO17.joint_names):
        np.testing.assert_array_equal(coco[ci], kp[MEDIAPIPE33.index(name)])
    assert MEDIAPIPE33_TO_COCO17[:3] == (0, 2, 5)


# ---------------------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------------------


def test_tracker_keeps_ids_for_moving_people_and_never_reuses_them():
    tracker = PersonTracker(TrackerConfig(max_missed=2))
    a, b = np.array([10.0, 10, 110, 310]), np.array([400.0, 20, 500, 320])
    ids0 = tracker.update(np.stack([a, b]))
    assert ids0 == [0, 1]
    for t in range(1, 8):  # both walk 25 px per frame; the input order swaps every other frame
        boxes = [a + [25 * t, 0, 25 * t, 0], b - [25 * t, 0, 25 * t, 0]]
        order = [1, 0] if t % 2 else [0, 1]
        ids = tracker.update(np.stack([boxes[k] for k in order]))
        assert [ids[order.index(0)], ids[order.index(1)]] == [0, 1]
    ids = tracker.update(np.stack([a + [200, 0, 200, 0], [700.0, 0, 760, 200]]))  # a newcomer
    assert ids[1] == 2
    for _ in range(3):  # everyone gone long enough to retire
        assert tracker.update(np.zeros((0, 4))) == []
    assert tracker.active_ids == ()
    assert tracker.update(np.stack([a])) == [3]  # same place, but a retired id is never handed out again


def test_tracker_is_deterministic():
    rng = np.random.default_rng(1)
    frames = [np.sort(rng.uniform(0, 500, (3, 4)).reshape(3, 2, 2), axis=1).reshape(3, 4) for _ in range(6)]
    runs = [[PersonTracker().update(f) for f in frames] for _ in range(2)]
    assert runs[0] == runs[1]


def test_one_euro_filter_follows_mediapipe_recursion():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0, derivate_cutoff=1.0, frequency_hz=30.0)
    assert f(np.array([10.0]), 0.0)[0] == 10.0  # first value passes through
    out = f(np.array([20.0]), 0.1)  # 10 Hz from the stamps; alpha = 1 / (1 + tau / te)
    alpha = 1.0 / (1.0 + (1.0 / (2 * math.pi)) / 0.1)
    np.testing.assert_allclose(out, [10.0 + alpha * 10.0])
    np.testing.assert_allclose(f(np.array([99.0]), 0.1), [99.0])  # a stale stamp: unfiltered, no update


# ---------------------------------------------------------------------------------------------------------
# PersonDetector glue with stand-in networks (no model files needed)
# ---------------------------------------------------------------------------------------------------------


class _FakeDetectorNet:
    """Two people: raw SSD outputs with each person's keypoints placed on one anchor."""

    name = "fake"

    def __init__(self, people: list[tuple[np.ndarray, np.ndarray]]) -> None:
        anchors = generate_anchors()
        self.raw = np.zeros((1, 2254, 12), np.float32)
        self.scores = np.full((1, 2254, 1), -20.0, np.float32)
        for k, (hip, top) in enumerate(people):
            idx = 1568 + 392 + 6 * (7 * 3 + 2 + 2 * k)  # a stride-32 cell per person
            kps = np.array([hip, top, hip, top])
            box = np.array([hip[0], (hip[1] + top[1]) / 2, 0.2, 0.5])
            self.raw[0, idx] = _raw_for(anchors[idx], box, kps)
            self.scores[0, idx] = 3.0 - k
        self.calls = 0

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        assert x.shape == (1, 224, 224, 3) and x.min() >= -1.0 and x.max() <= 1.0
        self.calls += 1
        return {"boxes": self.raw, "scores": self.scores}


class _FakeLandmarkNet:
    """Every crop: an upright person filling the crop; aux points make the next ROI equal this one."""

    name = "fake"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        assert x.shape[1:] == (256, 256, 3) and 0.0 <= x.min() and x.max() <= 1.0
        b = x.shape[0]
        self.batch_sizes.append(b)
        lm = np.zeros((b, 39, 5), np.float32)
        ys = np.linspace(40, 220, 33)
        lm[:, :33, 0], lm[:, :33, 1] = 128.0 + 20 * np.sin(ys), ys
        lm[:, 33, :2] = (128.0, 128.0)  # edge coordinates: the crop centre
        lm[:, 34, :2] = (128.0, 128.0 - 256 / 2.5)  # |34 - 33| * 2.5 = the crop side
        lm[:, :, 3:] = 5.0
        return {"landmarks": lm, "pose_flag": np.full((b, 1), 0.9, np.float32),
                "world": np.zeros((b, 39, 3), np.float32), "add_9": np.ones((b, 48, 16, 16), np.float32)}


def test_person_detector_batches_crops_reuses_rois_and_keeps_ids():
    people = [(np.array([0.3, 0.6]), np.array([0.3, 0.35])), (np.array([0.7, 0.6]), np.array([0.7, 0.4]))]
    det, lm = _FakeDetectorNet(people), _FakeLandmarkNet()
    cfg = DetectorConfig(max_people=2, refine_with_heatmap=False, feature_taps=("add_9",))
    pd = PersonDetector(cfg, detector_backend=det, landmark_backend=lm)
    image = np.full((480, 640, 3), 128, np.uint8)
    found = pd.detect(image)
    assert [p.id for p in found] == [0, 1]
    assert lm.batch_sizes == [2] and det.calls == 1  # one landmark call for both people
    box = letterbox(640, 480)
    hip0 = box.normalized_to_image(people[0][0])
    np.testing.assert_allclose([found[0].roi.center_u, found[0].roi.center_v], hip0, atol=1e-3)
    assert found[0].keypoints_px.shape == (33, 3) and found[0].world_m.shape == (33, 3)
    assert np.all((found[0].keypoints_px[:, 2] > 0.99) & (found[0].keypoints_px[:, 2] <= 1.0))
    assert found[0].features["add_9"].shape == (48, 16, 16)
    again = pd.detect(image)  # both people kept, quota full: the detector is skipped
    assert det.calls == 1 and pd.last_timings is not None and not pd.last_timings.ran_detector
    assert [p.id for p in again] == [0, 1]
    for a, b in zip(found, again, strict=True):  # the fake's aux points reproduce the ROI
        np.testing.assert_allclose(a.roi.center, b.roi.center, atol=1e-3)
        assert a.roi.size_px == pytest.approx(b.roi.size_px, rel=1e-4)
    pd3 = PersonDetector(DetectorConfig(max_people=3, refine_with_heatmap=False), det, lm)
    pd3.detect(image)
    pd3.detect(image)  # room for a third person: the detector runs again, its ROIs merge with the kept
    assert det.calls == 3 and lm.batch_sizes[-1] == 2
    with pytest.raises(ValueError, match="uint8"):
        pd.detect(image.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------
# End to end with the converted BlazePose networks
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blazepose_nets():
    require_pose_models()
    from lbi_ros.pose2d.blazepose import load_detector_net, load_landmark_net

    outputs = ("landmarks", "pose_flag", "world", "add_9", "heatmaps")
    return load_detector_net(), load_landmark_net(outputs), outputs


def _astronaut_error(person) -> float:
    ann = json.loads(FIXTURE.read_text())
    gt = np.asarray(ann["keypoints_px"], dtype=np.float64)  # (17, 3) COCO-17, conf 0 = not annotated
    assert ann["joint_names"] == list(COCO17.joint_names)
    coco = mediapipe33_to_coco17(person.keypoints_px)
    vis = gt[:, 2] > 0
    return float(np.linalg.norm(coco[vis, :2] - gt[vis, :2], axis=1).mean())


def test_astronaut_one_person_within_35_px(blazepose_nets):
    import skimage.data

    from lbi_ros.pose2d.backend import TorchNetBackend

    det_net, lm_net, outputs = blazepose_nets
    image = skimage.data.astronaut()  # (512, 512, 3) uint8 RGB
    cfg = DetectorConfig(max_people=1, feature_taps=("add_9",))
    pd = PersonDetector(cfg, TorchNetBackend(det_net), TorchNetBackend(lm_net, outputs))
    people = pd.detect(image)
    assert len(people) == 1
    error = _astronaut_error(people[0])
    print(f"astronaut mean error over the annotated joints: {error:.1f} px")  # measured 27.4 (MediaPipe 27.6)
    assert error <= 35.0
    p = people[0]
    assert p.score > 0.9 and p.features["add_9"].shape == (48, 16, 16)
    assert 0.2 < np.linalg.norm(p.world_m[11] - p.world_m[12]) < 0.5  # shoulder width, metres
    assert len(PersonDetector(DetectorConfig(max_people=4), pd.detector_backend, pd.landmark_backend).detect(image)) == 1
    again = pd.detect(image)  # tracked through the landmark ROI, detector skipped, same id
    assert [q.id for q in again] == [p.id] and not pd.last_timings.ran_detector


def test_onnxruntime_backend_matches_torch_and_is_cached(blazepose_nets, tmp_path):
    require_module("onnxruntime")
    from lbi_ros.pose2d.backend import OrtNetBackend, TorchNetBackend

    _, lm_net, outputs = blazepose_nets
    x = np.random.default_rng(0).uniform(0, 1, (2, 256, 256, 3)).astype(np.float32)  # batch 2: dynamic axis
    ort_backend = OrtNetBackend(lm_net, tmp_path, "landmark", outputs)
    got, want = ort_backend(x), TorchNetBackend(lm_net, outputs)(x)
    np.testing.assert_allclose(got["landmarks"], want["landmarks"], atol=0.05)  # crop pixels
    np.testing.assert_allclose(got["add_9"], want["add_9"], atol=1e-3)
    stamp = ort_backend.path.stat().st_mtime_ns
    assert OrtNetBackend(lm_net, tmp_path, "landmark", outputs).path.stat().st_mtime_ns == stamp  # no re-export

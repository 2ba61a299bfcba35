"""Scoring 2D detections against rendered truth: matching by 2D proximity, recall/precision, error, PCK,
and the demo's relabelling of skeletons with the truth ids of the people they came from."""

from __future__ import annotations

import numpy as np

from lbi_ros.benchmarks.detector_eval import SCORED_JOINTS, Detection2DScore
from lbi_ros.geometry import project
from lbi_ros.skeleton import H36M17, MEDIAPIPE33, STANDING_POSE_M

K_SIZE = (640, 480)


def _truth_uv() -> tuple[np.ndarray, np.ndarray]:
    from lbi_ros.demo.scene import INTRINSICS

    joints = np.stack([STANDING_POSE_M + [x, 0.2, 4.0] for x in (-1.0, 1.0)]).astype(np.float64)  # (2, 17, 3)
    return project(joints, INTRINSICS), joints


def _as_mediapipe(uv_h36m: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """A MediaPipe-33 detection holding the scored joints at the truth (+ shift); the rest missing."""
    kp = np.zeros((33, 3))
    for name in SCORED_JOINTS:
        kp[MEDIAPIPE33.index(name)] = [*(uv_h36m[H36M17.index(name)] + shift), 0.9]
    return kp


def test_perfect_shifted_missed_and_false_detections_are_scored():
    uv, joints = _truth_uv()
    score = Detection2DScore(*K_SIZE)
    far = np.zeros((33, 3))
    far[[11, 12, 23, 24], :] = [600.0, 20.0, 0.8]  # a "person" nowhere near anyone: unmatched
    matches = score.add_frame([_as_mediapipe(uv[1], (3.0, 4.0)), far], "mediapipe33", uv, joints[..., 2])
    assert matches == [(0, 1)]  # the shifted detection is person 1; person 0 is missed
    matches = score.add_frame([_as_mediapipe(uv[0]), _as_mediapipe(uv[1])], "mediapipe33", uv)
    assert sorted(matches) == [(0, 0), (1, 1)]
    r = score.result()
    assert (r.frames, r.people_present, r.detections, r.people_matched) == (2, 4, 4, 3)
    assert r.recall == 3 / 4 and r.precision == 3 / 4
    assert np.isclose(r.error_2d_px, 5.0 / 3)  # 12 joints 5 px off, 24 exact
    assert r.pck_2d == 100.0 and r.joints_scored == 36


def test_people_outside_the_image_are_not_present():
    uv, joints = _truth_uv()
    score = Detection2DScore(*K_SIZE)
    assert score.add_frame([], "mediapipe33", uv + [2000.0, 0.0]) == []
    assert score.result().people_present == 0


def test_demo_relabels_skeletons_with_the_truth_person_they_came_from():
    from lbi_ros.demo.report import ReceivedPeople2D, ReceivedSkeletons, score_detections
    from lbi_ros.demo.scene import SceneFrame

    uv, joints = _truth_uv()
    frame = SceneFrame(0, np.zeros((480, 640, 3), np.uint8), ("walker", "guide"), joints, np.zeros((2, 17, 3)))
    stamp = 123
    detected = [ReceivedPeople2D(stamp, "mediapipe33", {"7": _as_mediapipe(uv[1]), "9": _as_mediapipe(uv[0])})]
    received = [ReceivedSkeletons(stamp, stamp + 5, {"7": joints[1], "9": joints[0], "11": joints[0]})]
    metrics, relabelled = score_detections([frame], {0: stamp}, detected, received)
    assert metrics.recall == 1.0 and metrics.precision == 1.0
    (out,) = relabelled
    assert set(out.people) == {"walker", "guide"} and np.array_equal(out.people["guide"], joints[1])

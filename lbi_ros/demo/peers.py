"""The peers on the camera-only demo's own frames: LBI vs the 2D-only lifter vs BlazePose world landmarks (issue 16).

``lbi demo --keypoints builtin`` scores the node's skeletons (LBI) against the scene's truth. Users will
ask how that compares with what they would run otherwise, so after the ROS graph has stopped (the live
node's timing is not disturbed) the demo scores two peers on exactly the frames and people LBI was
scored on, root-relative (pelvis on pelvis), in millimetres:

- **2D-only lifter** (:func:`lift2d_poses`): the shipped ``baseline-2d`` weights through the same
  :class:`~lbi_ros.pipeline.LiftingPipeline` (default crop and input limits, as the node's default
  parameters set them), fed the same image and the same 2D people the node published on ``keypoints_2d``
  (recorded by the demo). The images are the scene's: :class:`~lbi_ros.demo.scene.DemoScene` is
  deterministic and the player publishes its frames as they are, so the recorder rebuilds the very pixels.
- **BlazePose world landmarks** (:func:`blazepose_world_poses`): the node does not publish its
  detector's ROIs or world landmarks, so the built-in detector (the node's settings,
  :func:`~lbi_ros.pose2d.keypoint_source.stream_config`, tiled and tracked) is rerun offline on the frames
  the node answered, in stamp order, and each person it finds is matched to a truth person by 2D
  proximity (:class:`~lbi_ros.benchmarks.detector_eval.Detection2DScore`, the rule that matched the
  node's own 2D people). Its world landmarks are mapped to camera-frame H36M-17 as
  :mod:`lbi_ros.evaluation.peer` does: 33 -> 17 rules, rotation onto the ROI's ray, and the train-split
  joint offsets (``weights/blazepose_world_offsets.json``) when that file exists, as ``lbi eval
  blazepose-world`` scores it. The number without the offsets is reported too
  (``blazepose_world_without_offsets``): the offsets were measured on a capsule/mesh mix and, on the demo's
  mesh people, make the peer worse (10 s run: 106 mm with, 85 mm without).

:func:`compare_root_relative` keeps the (frame, person) pairs all three produced, so the three numbers
are over one set of people (``people``). Pure numpy apart from the models each function is handed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lbi_ros import metrics
from lbi_ros.demo.report import ReceivedPeople2D
from lbi_ros.demo.scene import IMAGE_HEIGHT, IMAGE_WIDTH, INTRINSICS, SceneFrame
from lbi_ros.geometry import project
from lbi_ros.input_checks import PersonKeypoints

log = logging.getLogger(__name__)

PersonKey = tuple[int, str]  # (scene frame index, truth person id)


@dataclass(frozen=True)
class PeerComparison:
    """Root-relative MPJPE (mm) of the three on the same ``people`` (frame, person) pairs; NaN when none.
    ``blazepose_world`` has the train-split joint offsets applied; ``blazepose_world_without_offsets`` not."""

    lbi: float
    lift2d: float
    blazepose_world: float
    people: int
    blazepose_world_without_offsets: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def match_to_truth(frame: SceneFrame, people: Mapping[str, np.ndarray], joint_set: str) -> dict[str, str]:
    """Detected person id -> truth person id for one frame, by 2D proximity (the demo's detection scorer).

    ``people``: id -> (J, 3) [u, v, confidence] pixels in ``joint_set``. Unmatched detections are left out.
    """
    from lbi_ros.benchmarks.detector_eval import Detection2DScore

    ids = list(people)
    truth_uv = project(frame.joints_cam_m, INTRINSICS)  # (P, 17, 2), noise-free
    matches = Detection2DScore(IMAGE_WIDTH, IMAGE_HEIGHT).add_frame(
        [people[i] for i in ids], joint_set, truth_uv, frame.joints_cam_m[..., 2])
    return {ids[i]: frame.person_ids[p] for i, p in matches}


def lift2d_poses(frames: Sequence[SceneFrame], stamps: Mapping[int, int], detected: Sequence[ReceivedPeople2D],
                 pipeline: Any) -> dict[PersonKey, np.ndarray]:
    """Lift the node's recorded 2D people of each frame with ``pipeline`` (a
    :class:`~lbi_ros.pipeline.LiftingPipeline` holding the 2D-only lifter), all people of a frame in one call
    as the node does. Returns (frame index, truth id) -> (17, 3) camera-frame metres (module doc)."""
    by_stamp = {d.stamp_ns: d for d in detected}
    out: dict[PersonKey, np.ndarray] = {}
    for frame in frames:
        found = by_stamp.get(stamps.get(frame.index, -1))
        if found is None or not found.people:
            continue
        names = match_to_truth(frame, found.people, found.joint_set)
        people = [PersonKeypoints(pid, 1.0, kp) for pid, kp in found.people.items()]  # scores were not recorded
        lifted = pipeline.lift(frame.image_rgb, INTRINSICS, people, found.joint_set)
        for person in lifted.people:
            if person.person_id in names:
                out[(frame.index, names[person.person_id])] = person.joints_cam_m
    return out


def world_pose_camera(world_m: np.ndarray, roi_center_px: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """One person's BlazePose world landmarks (33, 3) m -> (17, 3) root-relative camera-frame H36M-17 (m):
    :mod:`lbi_ros.evaluation.peer`'s mapping, rotation onto the ray through ``roi_center_px`` (2,) of the
    demo camera, and ``offsets`` (17, 3) when given."""
    from lbi_ros.evaluation.peer import apply_joint_offsets, ray_rotation, world_to_h36m

    joints = world_to_h36m(np.asarray(world_m)[None])  # (1, 17, 3)
    k = np.array([[INTRINSICS.fx, INTRINSICS.fy, INTRINSICS.cx, INTRINSICS.cy]])
    rot = ray_rotation(np.asarray(roi_center_px, np.float64).reshape(1, 2), k)  # (1, 3, 3)
    joints = np.einsum("nab,njb->nja", rot, joints)
    return (apply_joint_offsets(joints, offsets) if offsets is not None else joints)[0]


def blazepose_world_poses(frames: Sequence[SceneFrame], stamps: Mapping[int, int], detector: Any,
                          offsets: np.ndarray | None) -> dict[PersonKey, np.ndarray]:
    """Rerun ``detector`` (a :class:`~lbi_ros.pose2d.detector.PersonDetector`, fresh) on ``frames`` in stamp
    order and map each person matched to the truth (module doc). Returns (frame index, truth id) -> (17, 3)
    root-relative camera-frame metres."""
    from lbi_ros.pose2d.detector import mark_unseen
    from lbi_ros.skeleton import MEDIAPIPE33

    out: dict[PersonKey, np.ndarray] = {}
    for frame in sorted((f for f in frames if f.index in stamps), key=lambda f: stamps[f.index]):
        found = detector.detect(frame.image_rgb, stamps[frame.index] / 1e9)
        people = {str(p.id): mark_unseen(p.keypoints_px, IMAGE_WIDTH, IMAGE_HEIGHT) for p in found}
        names = match_to_truth(frame, people, MEDIAPIPE33.name)
        for person in found:
            if str(person.id) in names:
                out[(frame.index, names[str(person.id)])] = world_pose_camera(person.world_m, person.roi.center,
                                                                             offsets)
    return out


def compare_root_relative(matched: Sequence[tuple[int, str, np.ndarray, np.ndarray]],
                          lift2d: Mapping[PersonKey, np.ndarray], blazepose_world: Mapping[PersonKey, np.ndarray],
                          offsets: np.ndarray | None = None) -> PeerComparison:
    """Root-relative MPJPE of LBI (``matched``: (frame index, truth id, predicted (17, 3), truth (17, 3)) as
    :func:`~lbi_ros.demo.report.score` returns them), the 2D-only lifter and BlazePose (``blazepose_world``
    without offsets; ``offsets`` (17, 3) m, person frame, applied for the headline number), over the pairs
    all three have. Poses in metres, any common frame (each is re-rooted at its pelvis); result in mm."""
    from lbi_ros.evaluation.peer import apply_joint_offsets

    common = [m for m in matched if (m[0], m[1]) in lift2d and (m[0], m[1]) in blazepose_world]
    if len(common) < len(matched):
        log.info("peer comparison: %d of the %d people LBI was scored on have all three poses", len(common),
                 len(matched))
    if not common:
        nan = float("nan")
        return PeerComparison(nan, nan, nan, 0)
    truth = np.stack([m[3] for m in common])  # (N, 17, 3)

    def mm(pred: np.ndarray) -> float:
        return 1000.0 * float(metrics.mpjpe(pred, truth, root_index=0))

    peer = np.stack([blazepose_world[(m[0], m[1])] for m in common])  # (N, 17, 3)
    with_offsets = apply_joint_offsets(peer, offsets) if offsets is not None else peer
    return PeerComparison(mm(np.stack([m[2] for m in common])), mm(np.stack([lift2d[(m[0], m[1])] for m in common])),
                          mm(with_offsets), len(common), mm(peer))


def compare_peers(frames: Sequence[SceneFrame], stamps: Mapping[int, int], detected: Sequence[ReceivedPeople2D],
                  matched: Sequence[tuple[int, str, np.ndarray, np.ndarray]], backend: str = "auto",
                  max_people: int = 16) -> PeerComparison:
    """The demo's whole comparison (module doc): loads ``baseline-2d`` on ``backend`` and a fresh built-in
    detector (``max_people``: the node's parameter default), then scores the frames LBI answered."""
    from lbi_ros.evaluation.peer import DEFAULT_OFFSETS_PATH, load_offsets
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.pose2d.keypoint_source import TiledPersonDetector, stream_config
    from lbi_ros.runtime.factory import create_backend

    answered = {m[0] for m in matched}
    scored = [f for f in frames if f.index in answered]
    lift2d = lift2d_poses(scored, stamps, detected, LiftingPipeline(create_backend("baseline-2d", backend)))
    offsets = load_offsets(DEFAULT_OFFSETS_PATH) if DEFAULT_OFFSETS_PATH.is_file() else None
    if offsets is None:
        log.warning("%s missing: BlazePose world landmarks scored without joint offsets", DEFAULT_OFFSETS_PATH)
    peer = blazepose_world_poses(scored, stamps, TiledPersonDetector(stream_config(max_people)), None)
    return compare_root_relative(matched, lift2d, peer, offsets)

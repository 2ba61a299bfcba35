"""The peer model: BlazePose GHUM world landmarks scored like a lifter (``lbi eval blazepose-world``, issue 16).

MediaPipe Pose is what robotics users run today for camera-to-3D; its landmark model also outputs 3D
"world landmarks" (39 x xyz, metres, origin between the hips; the first 33 are the body). This module turns
them into the lifters' output format so :func:`~lbi_ros.evaluation.core.compute_metrics` scores them on the
same rendered people (:mod:`lbi_ros.evaluation.detector_input`: the people the detector finds).

1. **33 -> H36M-17.** The rules of ``MAPPINGS["mediapipe33"]`` in :mod:`lbi_ros.skeleton`, the same that
   map the detector's 2D: limbs copied (shoulders, elbows, wrists, hips, knees, ankles), pelvis = mid-hips,
   thorax = mid-shoulders, spine = mean of both, neck/nose = 0.5 nose + 0.25 per ear, head top = mid-ears
   + 2/3 (mid-ears - mid-shoulders). These rules are affine, so they apply to 3D points as they are. The
   result is made root-relative (pelvis = 0), as the lifters' outputs are.
2. **Camera frame: rotation, not Procrustes.** The world points come back from the detector with the ROI's
   in-plane rotation undone (:func:`~lbi_ros.pose2d.landmarks.rotate_world`), so their axes are the image's
   (x right, y down, z away from the camera), as seen by a camera looking straight at the crop. The
   camera looks at the person along the ray through the ROI centre, so the points are rotated by the
   rotation that turns the optical axis onto that ray (:func:`ray_rotation`; up to 25 degrees at the image
   corners of a wide lens). MPJPE is then an honest camera-frame error; P-MPJPE removes rotation (and
   scale) anyway.
3. **Joint definitions differ** (GHUM's hips, shoulders and head are not the mocap rig's). The mean offset
   of each joint, in the person's own frame (:func:`body_frames`: hips, up, forward), is measured on the
   *train* split (:func:`fit_joint_offsets`, written by ``lbi bench detector-noise``) and added on test
   (:func:`apply_joint_offsets`). Metrics are reported with the offsets and, under ``without_offsets``,
   without them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.evaluation.core import compute_metrics
from lbi_ros.evaluation.sets import EvalSet
from lbi_ros.skeleton import H36M17, map_to_h36m

log = logging.getLogger(__name__)

BLAZEPOSE_WORLD = "blazepose-world"
DEFAULT_OFFSETS_PATH = Path(__file__).resolve().parents[1] / "weights" / "blazepose_world_offsets.json"


def world_to_h36m(world_m: np.ndarray) -> np.ndarray:
    """(N, 33, 3) MediaPipe-33 world points (m) -> (N, 17, 3) H36M-17, root-relative (pelvis = 0), float64."""
    world = np.asarray(world_m, dtype=np.float64)
    if world.ndim != 3 or world.shape[1:] != (33, 3):
        raise ValueError(f"world landmarks must be (N, 33, 3), got {world.shape}")
    with_conf = np.concatenate([world, np.ones(world.shape[:2] + (1,))], -1)  # every landmark present
    joints = map_to_h36m(with_conf, "mediapipe33")[..., :3]  # (N, 17, 3)
    return joints - joints[:, :1]


def ray_rotation(center_px: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations taking the optical axis (0, 0, 1) onto the ray through ``center_px`` (N, 2)
    for cameras ``intrinsics`` (N, 4) ``[fx, fy, cx, cy]`` (Rodrigues, smallest angle)."""
    c = np.asarray(center_px, np.float64)
    k = np.asarray(intrinsics, np.float64)
    ray = np.stack([(c[:, 0] - k[:, 2]) / k[:, 0], (c[:, 1] - k[:, 3]) / k[:, 1], np.ones(len(c))], -1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    axis = np.stack([-ray[:, 1], ray[:, 0], np.zeros(len(c))], -1)  # z x ray
    sin = np.linalg.norm(axis, axis=-1)
    cos = ray[:, 2]
    unit = axis / np.maximum(sin, 1e-12)[:, None]
    skew = np.zeros((len(c), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -unit[:, 2], unit[:, 1], -unit[:, 0]
    skew -= skew.transpose(0, 2, 1)
    eye = np.broadcast_to(np.eye(3), skew.shape)
    return eye + sin[:, None, None] * skew + (1 - cos)[:, None, None] * (skew @ skew)


def body_frames(joints: np.ndarray) -> np.ndarray:
    """(N, 17, 3) root-relative poses -> (N, 3, 3) orthonormal frames, columns = (left, up, forward).

    left = l_hip - r_hip; up = thorax - pelvis made orthogonal to left (camera y points down, so "up" is
    -y for an upright person); forward = left x up.
    """
    left = joints[:, 4] - joints[:, 1]
    left /= np.maximum(np.linalg.norm(left, axis=-1, keepdims=True), 1e-9)
    up = joints[:, 8] - joints[:, 0]
    up -= (up * left).sum(-1, keepdims=True) * left
    up /= np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-9)
    forward = np.cross(left, up)
    return np.stack([left, up, forward], -1)


def fit_joint_offsets(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean of ``target - predicted`` per joint in the predicted person's frame: (17, 3) metres."""
    frames = body_frames(np.asarray(predicted, np.float64))
    diff = np.asarray(target, np.float64) - predicted  # (N, 17, 3) camera frame
    local = np.einsum("nck,njc->njk", frames, diff)  # R^T d per joint
    return local.mean(0)


def apply_joint_offsets(predicted: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Add ``offsets`` (17, 3), person frame, to (N, 17, 3) predictions; re-root to the pelvis."""
    frames = body_frames(np.asarray(predicted, np.float64))
    out = predicted + np.einsum("nck,jk->njc", frames, np.asarray(offsets, np.float64))
    return out - out[:, :1]


def peer_predictions(eval_set: EvalSet) -> np.ndarray:
    """(N, 17, 3) camera-frame, root-relative metres from a detector set's ``world_landmarks`` (module doc)."""
    for key in ("world_landmarks", "roi_center_px", "intrinsics"):
        if key not in eval_set.extras:
            raise ValueError(f"{eval_set.name}: the peer needs extra {key!r} (build the set with detector_eval_set)")
    joints = world_to_h36m(eval_set.extras["world_landmarks"])
    rot = ray_rotation(eval_set.extras["roi_center_px"], eval_set.extras["intrinsics"])
    return np.einsum("nab,njb->nja", rot, joints)


def save_offsets(path: str | Path, offsets: np.ndarray, **meta: Any) -> None:
    """Write offsets (17, 3) m as JSON ``{"joint_names", "offsets_m", ...meta}``."""
    record = {"joint_names": list(H36M17.joint_names),
              "offsets_m": [[round(float(v), 5) for v in row] for row in np.asarray(offsets)], **meta}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def load_offsets(path: str | Path) -> np.ndarray:
    """Offsets (17, 3) m from :func:`save_offsets`' file; raises ValueError on a malformed file."""
    record = json.loads(Path(path).read_text())
    offsets = np.asarray(record.get("offsets_m"), dtype=np.float64)
    if offsets.shape != (17, 3) or record.get("joint_names") != list(H36M17.joint_names):
        raise ValueError(f"{path}: expected H36M-17 offsets (17, 3), got {offsets.shape}")
    return offsets


def evaluate_peer(eval_set: EvalSet, offsets: np.ndarray | None) -> tuple[dict[str, Any], np.ndarray]:
    """Score the peer: (metrics with ``offsets`` applied, or without when None; predictions).

    With offsets the metrics dict also holds ``without_offsets`` (the summary metrics without them).
    """
    raw = peer_predictions(eval_set)
    plain = compute_metrics(raw, eval_set.joints_3d, eval_set.labels)
    if offsets is None:
        plain["joint_offsets"] = "none"
        return plain, raw
    corrected = apply_joint_offsets(raw, offsets)
    metrics = compute_metrics(corrected, eval_set.joints_3d, eval_set.labels)
    metrics["joint_offsets"] = "train-split mean offsets applied"
    metrics["without_offsets"] = {k: plain[k] for k in ("mpjpe_mm", "p_mpjpe_mm", "depth_mpjpe_mm", "pck150",
                                                        "auc", "per_joint_mm")}
    return metrics, corrected


def peer_on_image(image_rgb: np.ndarray, intrinsics: np.ndarray, detector: Any = None) -> np.ndarray | None:
    """The peer on one photo: the best-scoring person's (17, 3) root-relative camera-frame pose (m), or None.

    ``intrinsics`` ``[fx, fy, cx, cy]``; ``detector``: a :class:`~lbi_ros.pose2d.detector.PersonDetector`
    (default: a new one with MediaPipe's thresholds). No joint offsets (they are for the rendered sets).
    """
    if detector is None:
        from lbi_ros.pose2d.detector import DetectorConfig, PersonDetector
        from lbi_ros.pose2d.keypoint_source import default_backend

        detector = PersonDetector(DetectorConfig(backend=default_backend()))
    people = detector.detect(image_rgb)
    if not people:
        return None
    best = max(people, key=lambda p: p.score)
    joints = world_to_h36m(np.asarray(best.world_m)[None])
    rot = ray_rotation(best.roi.center[None], np.asarray(intrinsics, np.float64).reshape(1, 4))
    return np.einsum("nab,njb->nja", rot, joints)[0]


def plausibility(joints_m: np.ndarray) -> dict[str, float]:
    """Checks for a photo without 3D truth, from an H36M-17 camera-frame pose (17, 3) m (y down):
    ``shoulder_width_m``, ``torso_m`` (pelvis to thorax), ``l_elbow_above_shoulder_m`` (negative = below)."""
    j = np.asarray(joints_m, np.float64)
    return {"shoulder_width_m": float(np.linalg.norm(j[11] - j[14])),
            "torso_m": float(np.linalg.norm(j[8] - j[0])),
            "l_elbow_above_shoulder_m": float(j[11, 1] - j[12, 1])}

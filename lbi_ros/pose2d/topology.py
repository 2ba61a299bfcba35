"""MediaPipe pose landmark topology: the 33 body landmarks (+ 6 auxiliary outputs) and the map to COCO-17.

The project's joint names live in :mod:`lbi_ros.skeleton` (``MEDIAPIPE33``: ``nose``, ``l_eye_inner``, ...);
this module only adds what the BlazePose landmark model needs on top: MediaPipe's own spelling of the same
33 names (``left_eye_inner``, ..., for matching MediaPipe's documentation and tools), the indices of the
auxiliary outputs, and the index map from MediaPipe-33 to COCO-17.

The landmark model emits 39 points (``pose_landmark_full.tflite``, output ``Identity``): 0..32 the body
landmarks in the order of ``mediapipe/python/solutions/pose.py`` ``PoseLandmark`` (google-ai-edge/mediapipe,
Apache-2.0), 33 and 34 the auxiliary mid-hip and full-body scale points that drive the next frame's ROI
(``tensors_to_pose_landmarks_and_segmentation.pbtxt`` splits ``begin: 33 end: 35``), 35..38 unused by
MediaPipe's graphs.
"""

from __future__ import annotations

import numpy as np

from lbi_ros.skeleton import COCO17, MEDIAPIPE33

NUM_BODY_LANDMARKS = 33
NUM_MODEL_LANDMARKS = 39
AUX_HIP_CENTER = 33
AUX_SCALE_POINT = 34

MEDIAPIPE33_NAMES: tuple[str, ...] = MEDIAPIPE33.joint_names
"""The project's names for the 33 landmarks, in MediaPipe's order."""


def _mediapipe_spelling(name: str) -> str:
    """``l_eye_inner`` -> ``left_eye_inner``; MediaPipe writes the mouth corners ``mouth_left``/``mouth_right``."""
    side, _, part = name.partition("_")
    if side not in ("l", "r") or not part:
        return name
    full = "left" if side == "l" else "right"
    return f"mouth_{full}" if part == "mouth" else f"{full}_{part}"


MEDIAPIPE33_OFFICIAL_NAMES: tuple[str, ...] = tuple(_mediapipe_spelling(n) for n in MEDIAPIPE33_NAMES)
"""MediaPipe's ``PoseLandmark`` names, lower case: ``nose``, ``left_eye_inner``, ..., ``right_foot_index``."""

MEDIAPIPE33_TO_COCO17: tuple[int, ...] = tuple(MEDIAPIPE33.index(name) for name in COCO17.joint_names)
"""For each COCO-17 joint (in COCO order), its MediaPipe-33 index. Every COCO joint has a direct twin."""


def mediapipe33_to_coco17(keypoints: np.ndarray) -> np.ndarray:
    """(..., 33, C) MediaPipe-33 -> (..., 17, C) COCO-17 (a gather; coordinates and confidences unchanged)."""
    kp = np.asarray(keypoints)
    if kp.ndim < 2 or kp.shape[-2] != NUM_BODY_LANDMARKS:
        raise ValueError(f"expected (..., {NUM_BODY_LANDMARKS}, C) MediaPipe landmarks, got {kp.shape}")
    return kp[..., list(MEDIAPIPE33_TO_COCO17), :]

"""The BlazePose 2D person detector: frame -> people with 33 keypoints, stable ids, world points, features.

One frame, MediaPipe's pose pipeline extended to several people (constants and sources cited in
:mod:`~lbi_ros.pose2d.anchors`, :mod:`~lbi_ros.pose2d.roi`, :mod:`~lbi_ros.pose2d.landmarks`):

1. **Detector** (when due, see below): letterbox the frame to 224 x 224, values in [-1, 1]; decode the
   2254 anchors; weighted NMS; map the keypoints back to image pixels; one ROI per detection from
   keypoints 0 and 1 (centre mid-hip, side 2.5 x the distance, rotation so the body is upright).
2. **ROI reuse** (``reuse_landmark_roi``): each person kept from the last frame brings the ROI that its
   landmarks (auxiliary points 33, 34, one-euro filtered per person id as MediaPipe always does, see
   :mod:`~lbi_ros.pose2d.landmarks`; ``smooth_roi``) define, as MediaPipe does between detector runs.
   On the static astronaut photo the reused ROI settles within 1-3 px a frame, and the annotated-joint
   error of the following frames is 28-35 px (27.4 on the first, detector-ROI frame). Detection ROIs
   that overlap a kept ROI (IoU > ``duplicate_iou``) are dropped; at most ``max_people`` ROIs, kept
   people first, then detections by score.
3. **Landmarks**: all ROIs are cropped upright to 256 x 256 ([0, 1] RGB) and run in *one* batched call;
   people whose pose flag is below ``min_pose_presence`` are dropped; landmarks are heatmap-refined and
   projected to the image; duplicates (landmark boxes with IoU > ``duplicate_iou``) keep the higher
   pose flag.
4. **Ids**: :class:`~lbi_ros.pose2d.tracker.PersonTracker` on the landmark boxes.

``share_features_tap`` (e.g. ``"add_8"``; on when the lifter is a gated model over that tap): a kept person's
landmark crop is the *shared square crop* instead, the upright square
:func:`~lbi_ros.pose2d.roi.person_roi_from_keypoints` of its last keypoints (points outside the image unseen),
cut as the lifter cuts it (:func:`~lbi_ros.pose2d.roi.crop_person_square`, black outside the image), and the
tap comes back beside the landmarks (``Person2D.shared_features``), so the lifter runs only its head. New
detections keep MediaPipe's rotated ROI for their first frame (no tap is shared for them). The square is
smaller than MediaPipe's ROI (1.25 x the joints' extent, not 2.5 x hip-to-scale-point), so detections are
matched against the ROI MediaPipe would have tracked the person with (from the aux landmarks, as usual). A
person is tracked on the square only while it is at least ``SHARE_MIN_SCALE`` x that ROI, the body is within
``SHARE_MAX_TILT_RAD`` of upright and the square overlaps no other person's ROI by more than
``SHARE_MAX_OVERLAP`` (IoU); else on MediaPipe's ROI, and lifted from the lifter's own crop. Why: on a
head-and-shoulders view the square covers only the visible joints, and landmarks on it predict a smaller
person each frame (three portraits on one canvas: the square shrank from 276 to 168 px in 5 frames and a
person was lost; square / ROI there 0.58-0.62, for the demo scene's walking people 0.75 on the first frame,
then 0.83-0.89); and where two people overlap (the demo's walker crossing the guide) the landmark net on the
tighter upright square locks onto the other person, which MediaPipe's hip-centred ROI does not.

When the detector runs: always when nobody is kept; otherwise every ``detect_interval`` frames while
fewer than ``max_people`` are kept (to find newcomers), and every ``refresh_interval`` frames when the
quota is full (0 = never; MediaPipe's single-person graph never re-detects while tracking).

Measured 2026-12-06 on this project's 2-core shared CPU (another job running: about +-15 % noise), torch
2.13 CPU and ONNX Runtime 1.32, every library on one thread, median of 30 frames after 5 warm-up frames,
ms per frame. Command: ``lbi bench detector-latency --frames 30``.
``detect`` = detector on every frame; ``reuse`` = ``max_people`` = people in view, so the landmark ROI
is reused and the detector skipped (0/30 runs)::

    scene (people)         backend       mode    detect  landmarks  total
    astronaut 512^2 (1)    torch         detect    24.0       28.7   52.6
    astronaut 512^2 (1)    torch         reuse      0.0       26.9   26.9
    640x480, 3 copies (3)  torch         detect    19.0       75.7   95.2
    640x480, 3 copies (3)  torch         reuse      0.0       73.2   73.2
    astronaut 512^2 (1)    onnxruntime   detect    12.1       11.5   23.6
    astronaut 512^2 (1)    onnxruntime   reuse      0.0       11.0   11.0
    640x480, 3 copies (3)  onnxruntime   detect    12.3       31.2   43.4
    640x480, 3 copies (3)  onnxruntime   reuse      0.0       31.6   31.6

So ONNX Runtime is about 2.3x faster than torch eager for both nets. Reusing the ROI pays: it halves the
one-person frame (the detector is as costly as one landmark crop), and saves 12-20 ms on three people.
The landmark cost grows linearly with people even in one batched call (about 10.5 ms a crop in ONNX
Runtime, 25 ms in torch). Accuracy on the astronaut (first frame, torch): 27.4 px mean error over the 7
annotated joints (MediaPipe's own pipeline: 27.6 px); 25.3 px without heatmap refinement; 50.7 px when
the landmark crop pads with zeros instead of replicating the border (the ROI reaches far below the frame).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from lbi_ros.pose2d.anchors import (
    POSE_DECODE,
    box_iou,
    decode_detections,
    generate_anchors,
    weighted_nms,
)
from lbi_ros.pose2d.backend import BackendKind, NetBackend, make_backend
from lbi_ros.pose2d.landmarks import LANDMARK_INPUT_SIZE, OneEuroFilter, decode_landmarks, rotate_world
from lbi_ros.pose2d.roi import (
    BorderMode,
    Roi,
    crop_image,
    crop_person_square,
    letterbox,
    letterbox_image,
    person_roi_from_keypoints,
    roi_from_alignment_points,
)
from lbi_ros.pose2d.topology import AUX_HIP_CENTER, AUX_SCALE_POINT, NUM_BODY_LANDMARKS
from lbi_ros.pose2d.tracker import PersonTracker, TrackerConfig
from lbi_ros.skeleton import MEDIAPIPE33, map_to_h36m

log = logging.getLogger(__name__)

DETECTOR_INPUT_SIZE = 224
SHARE_MIN_SCALE = 0.7  # shared square side / MediaPipe ROI side below which a person is not shared (module doc)
SHARE_MAX_TILT_RAD = 0.5  # |MediaPipe ROI rotation| above which a person is not shared
SHARE_MAX_OVERLAP = 0.2  # IoU of a shared square with another person's ROI above which neither is shared


@dataclass(frozen=True)
class DetectorConfig:
    """Everything :class:`PersonDetector` can be told. Defaults reproduce MediaPipe's thresholds."""

    max_people: int = 4
    min_detection_score: float = 0.5  # detector sigmoid score (TensorsToDetections min_score_thresh)
    nms_iou_threshold: float = 0.3  # weighted NMS min_suppression_threshold
    min_pose_presence: float = 0.5  # landmark model pose flag (ThresholdingCalculator threshold)
    duplicate_iou: float = 0.5  # two ROIs / landmark boxes overlapping more are the same person
    reuse_landmark_roi: bool = True
    smooth_roi: bool = True  # one-euro filter on the aux landmarks before they become the next ROI
    assumed_fps: float = 30.0  # frame rate for the filter when detect() gets no time stamps
    detect_interval: int = 1  # frames between detector runs while fewer than max_people are kept
    refresh_interval: int = 0  # frames between detector runs when max_people are kept (0 = never)
    refine_with_heatmap: bool = True
    crop_border: BorderMode = "replicate"  # MediaPipe's landmark crop default
    feature_taps: tuple[str, ...] = ()  # e.g. ("add_9",): per-person FPN maps (C, h, w) in Person2D.features
    share_features_tap: str | None = None  # e.g. "add_8": kept people on the shared crop (module doc)
    backend: BackendKind = "torch"
    intra_op_threads: int = 1  # ONNX Runtime only
    cache_dir: str | None = None  # ONNX exports; None = <repo>/.cache/pose2d_onnx
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")
        for name in ("min_detection_score", "nms_iou_threshold", "min_pose_presence", "duplicate_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.detect_interval < 1 or self.refresh_interval < 0:
            raise ValueError(f"need detect_interval >= 1 and refresh_interval >= 0, got "
                             f"{self.detect_interval}, {self.refresh_interval}")
        if not self.assumed_fps > 0:
            raise ValueError(f"assumed_fps must be > 0, got {self.assumed_fps}")
        if self.backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {self.backend!r}")


@dataclass(frozen=True, eq=False)
class Person2D:
    """One person in one frame.

    ``keypoints_px`` (33, 3) MediaPipe-33 ``[u, v, confidence]``: image pixels (pixel centres at integers),
    confidence = min(sigmoid(visibility), sigmoid(presence)) in [0, 1] (see
    :func:`~lbi_ros.pose2d.landmarks.landmark_confidence`); points may lie outside the image.
    ``world_m`` (33, 3) metres, hip-centred, x right / y down in the image's orientation (MediaPipe's world
    landmarks rotated by the ROI). ``score`` is the landmark model's pose flag (a probability).
    ``roi`` is the crop this frame's landmarks came from. ``features`` maps each requested FPN tap to its
    (C, h, w) float32 map for this person's crop (empty unless ``feature_taps`` is set). ``shared_features``:
    the ``share_features_tap`` map when ``roi`` is the shared square crop, else None.
    """

    id: int
    score: float
    keypoints_px: np.ndarray
    world_m: np.ndarray
    roi: Roi
    features: dict[str, np.ndarray] = field(default_factory=dict)
    shared_features: np.ndarray | None = None


@dataclass(frozen=True)
class DetectorTimings:
    """Wall time of the last :meth:`PersonDetector.detect` call, milliseconds."""

    detect_ms: float  # letterbox + detector net + decoding + NMS (0 when the detector was skipped)
    landmarks_ms: float  # crops + one batched landmark call + decoding
    total_ms: float
    ran_detector: bool
    num_rois: int


def mark_unseen(keypoints_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """(J, 3) [u, v, conf] -> a copy with conf 0 for points outside the image (pixel centres at integers)."""
    kp = np.array(keypoints_px, dtype=np.float32, copy=True)
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= width - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= height - 0.5)
    kp[~inside, 2] = 0.0
    return kp


def _landmark_box(points_px: np.ndarray) -> np.ndarray:
    return np.concatenate([points_px.min(0), points_px.max(0)])


class PersonDetector:
    """Runs the BlazePose detector + landmark networks over frames; keeps per-person state across calls.

    Backends default to the converted torch modules (``lbi_ros.pose2d.blazepose``) run through
    ``config.backend``; pass ``detector_backend`` / ``landmark_backend`` to plug anything else that takes
    (B, H, W, 3) float32 and returns the named outputs.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig(), detector_backend: NetBackend | None = None,
                 landmark_backend: NetBackend | None = None) -> None:
        self.config = config
        self._anchors = generate_anchors()
        self._decode = replace(POSE_DECODE, min_score_thresh=config.min_detection_score)
        lm_outputs = ["landmarks", "pose_flag", "world", *config.feature_taps]
        if config.share_features_tap:
            lm_outputs.append(config.share_features_tap)
        if config.refine_with_heatmap:
            lm_outputs.append("heatmaps")
        self._lm_outputs = tuple(dict.fromkeys(lm_outputs))
        self.detector_backend = detector_backend or self._default_backend("detector")
        self.landmark_backend = landmark_backend or self._default_backend("landmark")
        self.tracker = PersonTracker(config.tracker)
        self.last_timings: DetectorTimings | None = None
        self._kept: list[tuple[int, Roi]] = []  # (id, next-frame ROI) of last frame's people
        self._aux_filters: dict[int, OneEuroFilter] = {}  # per person id
        self._match: dict[int, Roi] = {}  # share_features_tap: MediaPipe's ROI of a kept person, for _merge
        self._since_detection = 0
        self._frame = 0

    def _default_backend(self, which: Literal["detector", "landmark"]) -> NetBackend:
        from lbi_ros.pose2d import blazepose

        cfg = self.config
        if which == "detector":
            net, outputs = blazepose.load_detector_net(), ("boxes", "scores")
        else:  # only the heads asked for are built (no segmentation head, no unused taps)
            net = blazepose.load_landmark_net(self._lm_outputs)
            outputs = self._lm_outputs
        return make_backend(cfg.backend, net, f"blazepose_{which}", outputs, cfg.cache_dir, cfg.intra_op_threads)

    def reset(self) -> None:
        """Forget the people of previous frames (ids keep counting up)."""
        self._kept = []
        self._aux_filters, self._match = {}, {}
        self._since_detection = 0
        self.tracker.reset()

    # -----------------------------------------------------------------------------------------------------

    def detect_rois(self, image_rgb: np.ndarray) -> tuple[list[Roi], np.ndarray]:
        """Detector stage only: (H, W, 3) uint8 -> (ROIs, scores (N,)) of every detection, best first.

        Not capped at ``max_people`` here: :meth:`detect` first drops the ones that duplicate kept people.
        """
        h, w = image_rgb.shape[:2]
        box = letterbox(w, h, DETECTOR_INPUT_SIZE)
        x = letterbox_image(image_rgb, box).astype(np.float32) * (2.0 / 255.0) - 1.0  # (224, 224, 3) in [-1, 1]
        out = self.detector_backend(x[None])
        dets = decode_detections(out["boxes"][0], out["scores"][0], self._anchors, self._decode)
        dets = weighted_nms(dets, self.config.nms_iou_threshold)
        rois, scores = [], []
        for kp, score in zip(dets.keypoints, dets.scores, strict=True):
            pts = box.normalized_to_image(kp[:2])  # (2, 2): mid-hip, full-body point, image pixels
            try:
                rois.append(roi_from_alignment_points(pts[0], pts[1]))
            except ValueError:
                continue  # degenerate detection: both points coincide
            scores.append(float(score))
        return rois, np.asarray(scores, dtype=np.float32)

    def _detector_due(self) -> bool:
        cfg = self.config
        if not cfg.reuse_landmark_roi or not self._kept:
            return True
        if len(self._kept) < cfg.max_people:
            return self._since_detection >= cfg.detect_interval
        return cfg.refresh_interval > 0 and self._since_detection >= cfg.refresh_interval

    def _merge(self, kept: list[Roi], found: list[Roi], match: list[Roi] | None = None) -> list[Roi]:
        """Kept ROIs, then the found ones that overlap none of ``match`` (default ``kept``), up to ``max_people``."""
        rois = list(kept)
        boxes = [r.bounding_box() for r in (kept if match is None else match)]
        for roi in found:
            b = roi.bounding_box()
            if boxes and box_iou(b, np.asarray(boxes)).max() > self.config.duplicate_iou:
                continue
            rois.append(roi)
            boxes.append(b)
        return rois[: self.config.max_people]

    def detect(self, image_rgb: np.ndarray, stamp_s: float | None = None) -> list[Person2D]:
        """People in one RGB frame (H, W, 3) uint8, ordered by id; updates :attr:`last_timings`.

        ``stamp_s``: the frame's time in seconds (increasing), for the ROI filter; default
        ``frame index / assumed_fps``.
        """
        if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 \
                or image_rgb.dtype != np.uint8:
            got = (getattr(image_rgb, "shape", None), getattr(image_rgb, "dtype", type(image_rgb)))
            raise ValueError(f"image_rgb must be an (H, W, 3) uint8 array, got {got}")
        t0 = time.perf_counter()
        ran = self._detector_due()
        found: list[Roi] = []
        if ran:
            found, _ = self.detect_rois(image_rgb)
            self._since_detection = 0
        t1 = time.perf_counter()
        kept = [roi for _, roi in self._kept] if self.config.reuse_landmark_roi else []
        rois = self._merge(kept, found, [self._match.get(pid, roi) for pid, roi in self._kept][: len(kept)])
        stamp = float(stamp_s) if stamp_s is not None else self._frame / self.config.assumed_fps
        shared = [pid in self._match for pid, _ in self._kept][: len(rois)] if kept else []  # kept ROIs come first
        people = self._landmarks(image_rgb, rois, stamp, shared) if rois else self._forget_all()
        t2 = time.perf_counter()
        self._since_detection += 1
        self._frame += 1
        self.last_timings = DetectorTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t2 - t0) * 1e3, ran, len(rois))
        return people

    def _forget_all(self) -> list[Person2D]:
        self.tracker.update(np.zeros((0, 4)))  # count a missed frame for everyone
        self._kept, self._aux_filters, self._match = [], {}, {}
        return []

    def _next_roi(self, pid: int, aux_px: np.ndarray, stamp_s: float) -> Roi | None:
        """Next frame's ROI from this frame's (2, 2) aux landmarks, filtered as MediaPipe does."""
        side = 2.0 * float(np.linalg.norm(aux_px[1] - aux_px[0]))  # object scale: unscaled aux ROI side
        if not side > 0:
            return None
        if self.config.smooth_roi:
            filt = self._aux_filters.setdefault(pid, OneEuroFilter())
            aux_px = filt(aux_px, stamp_s, 1.0 / side)
        try:
            return roi_from_alignment_points(aux_px[0], aux_px[1])
        except ValueError:
            return None

    def _uncrowded(self, kept: list[tuple[int, Roi]]) -> list[tuple[int, Roi]]:
        """``kept`` with the shared squares that overlap another person's ROI back on MediaPipe's ROI."""
        boxes = np.asarray([roi.bounding_box() for _, roi in kept]).reshape(-1, 4)
        out = []
        for k, (pid, roi) in enumerate(kept):
            others = np.delete(boxes, k, axis=0)
            if pid in self._match and len(others) and box_iou(boxes[k], others).max() > SHARE_MAX_OVERLAP:
                roi = self._match.pop(pid)
            out.append((pid, roi))
        return out

    def _landmarks(self, image_rgb: np.ndarray, rois: list[Roi], stamp_s: float,
                   shared: list[bool] | None = None) -> list[Person2D]:
        """Landmarks in ``rois``; ``shared[k]``: ROI k is a shared square crop (``share_features_tap``)."""
        cfg = self.config
        size = LANDMARK_INPUT_SIZE
        shared = list(shared or []) + [False] * (len(rois) - len(shared or []))
        crops = np.stack([crop_person_square(image_rgb, r, size) if shared[k] else crop_image(image_rgb, r, size,
                          cfg.crop_border) for k, r in enumerate(rois)])  # (B, 256, 256, 3)
        out = self.landmark_backend(crops.astype(np.float32) * (1.0 / 255.0))
        flag = np.asarray(out["pose_flag"], dtype=np.float32).reshape(len(rois))  # probability
        raw = np.asarray(out["landmarks"], dtype=np.float32).reshape(len(rois), -1, 5)  # (B, 39, 5)
        heatmap = out["heatmaps"] if cfg.refine_with_heatmap else None  # (B, 39, 64, 64) logits
        points, conf = decode_landmarks(raw, rois, heatmap, size)  # (B, 39, 2), (B, 39)
        world = rotate_world(np.asarray(out["world"], dtype=np.float32).reshape(len(rois), -1, 3), rois)
        order = [i for i in np.argsort(-flag, kind="stable") if flag[i] >= cfg.min_pose_presence]
        chosen: list[int] = []
        boxes: list[np.ndarray] = []
        for i in order:  # duplicates: two ROIs that converged on one person
            b = _landmark_box(points[i, :NUM_BODY_LANDMARKS])
            if boxes and box_iou(b, np.asarray(boxes)).max() > cfg.duplicate_iou:
                continue
            chosen.append(i)
            boxes.append(b)
        ids = self.tracker.update(np.asarray(boxes).reshape(-1, 4))
        people, kept = [], []
        for i, pid in zip(chosen, ids, strict=True):
            kp = np.concatenate([points[i, :NUM_BODY_LANDMARKS], conf[i, :NUM_BODY_LANDMARKS, None]], 1)
            features = {k: np.array(out[k][i], dtype=np.float32) for k in cfg.feature_taps}
            tap = np.array(out[cfg.share_features_tap][i], dtype=np.float32) if shared[i] else None
            people.append(Person2D(int(pid), float(flag[i]), kp.astype(np.float32),
                                   world[i, :NUM_BODY_LANDMARKS].astype(np.float32), rois[i], features, tap))
            roi = self._next_roi(int(pid), points[i, AUX_HIP_CENTER : AUX_SCALE_POINT + 1], stamp_s)
            self._match.pop(int(pid), None)
            if cfg.share_features_tap and roi is not None:  # the next frame's shared square crop, from these keypoints
                seen = mark_unseen(kp, image_rgb.shape[1], image_rgb.shape[0])
                square = person_roi_from_keypoints(map_to_h36m(seen, MEDIAPIPE33))
                if square is not None and square.size_px >= SHARE_MIN_SCALE * roi.size_px \
                        and abs(roi.rotation_rad) <= SHARE_MAX_TILT_RAD:
                    self._match[int(pid)], roi = roi, square
            if roi is None:
                log.debug("person %d: degenerate auxiliary landmarks, no ROI for the next frame", pid)
            else:
                kept.append((int(pid), roi))
        self._kept = self._uncrowded(kept) if cfg.share_features_tap else kept
        live = set(ids)
        self._aux_filters = {pid: f for pid, f in self._aux_filters.items() if pid in live}
        self._match = {pid: r for pid, r in self._match.items() if pid in live}
        return sorted(people, key=lambda p: p.id)


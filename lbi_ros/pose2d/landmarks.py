"""Post-processing of the BlazePose landmark model: crop pixels -> image pixels, confidences, world frame.

MediaPipe's ``tensors_to_pose_landmarks_and_segmentation.pbtxt`` and ``pose_landmark_by_roi_cpu.pbtxt``
(google-ai-edge/mediapipe 85c0cdc, Apache-2.0) define what is done here, per person:

* ``TensorsToLandmarksCalculator``: 39 x (x, y, z, visibility, presence); x, y in pixels of the 256 x 256
  crop (MediaPipe divides by 256 and treats the result as *edge* coordinates, so the pixel-centre
  coordinate is ``x - 0.5``); visibility and presence go through a sigmoid.
* ``RefineLandmarksFromHeatmapCalculator`` (kernel_size 7, min_confidence_to_refine 0.5): when the model
  also gives its (64, 64, 39) heatmap logits, x, y are replaced by the sigmoid-weighted centroid of the
  7 x 7 cells around the landmark's cell, if the window's peak sigmoid is >= 0.5. We reproduce it
  exactly, including that MediaPipe takes cell *index* / 64 (the cell's left/top edge, not its centre)
  as the refined normalised coordinate.
* ``LandmarkProjectionCalculator``: rotate and scale into the image with the ROI
  (:func:`lbi_ros.pose2d.roi.crop_to_image`).
* ``WorldLandmarkProjectionCalculator``: world landmarks (metres, hip-centred) are rotated about z by
  the ROI rotation, so an upright crop of a tilted person gives world points tilted like the image.
* ``pose_landmark_filtering.pbtxt``: before the auxiliary landmarks 33, 34 become the next frame's ROI,
  they always go through a one-euro filter (``LandmarksSmoothingCalculator``, min_cutoff 0.01, beta 10,
  derivate_cutoff 1, in pixels, value scale 1 / object scale where the object scale is the unscaled
  aux ROI side). Without it the ROI -> landmarks -> ROI loop wanders: on the (static) astronaut photo
  confident joints jumped 15-98 px from frame to frame. :class:`OneEuroFilter` reproduces
  ``mediapipe/util/filtering/one_euro_filter.cc`` (derivative from the raw previous value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lbi_ros.pose2d.roi import Roi, crop_affine

LANDMARK_INPUT_SIZE = 256
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5
AUX_FILTER_MIN_CUTOFF = 0.01  # Hz
AUX_FILTER_BETA = 10.0
AUX_FILTER_DERIVATE_CUTOFF = 1.0  # Hz
DEFAULT_FREQUENCY_HZ = 30.0  # LandmarksSmoothingCalculatorOptions.OneEuroFilter.frequency default


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function, float32."""
    x = np.clip(np.asarray(x, dtype=np.float32), -80.0, 80.0)
    return 1.0 / (1.0 + np.exp(-x))


def heatmap_to_nchw(heatmap: np.ndarray, num_landmarks: int = 39) -> np.ndarray:
    """Accept (B, 64, 64, 39) NHWC or (B, 39, 64, 64) NCHW heatmap logits; return (B, 39, 64, 64)."""
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 4:
        raise ValueError(f"heatmap must be 4-D, got {hm.shape}")
    if hm.shape[1] == num_landmarks:
        return hm
    if hm.shape[3] == num_landmarks:
        return hm.transpose(0, 3, 1, 2)
    raise ValueError(f"heatmap {hm.shape} has no axis of {num_landmarks} landmarks at 1 or 3")


def refine_from_heatmap(
    xy_norm: np.ndarray, heatmap_logits: np.ndarray, kernel_size: int = HEATMAP_KERNEL,
    min_confidence: float = HEATMAP_MIN_CONFIDENCE,
) -> np.ndarray:
    """MediaPipe's heatmap refinement, vectorised: (B, J, 2) normalised crop x, y -> refined (B, J, 2).

    ``heatmap_logits`` (B, J, Hh, Wh). A landmark whose cell ``(int(y * Hh), int(x * Wh))`` (C++ truncation)
    lies outside the heatmap is kept as is. Cells past the heatmap border count as zero confidence.
    """
    xy = np.asarray(xy_norm, dtype=np.float32)
    hm = np.asarray(heatmap_logits, dtype=np.float32)
    b, j, hh, wh = hm.shape
    if xy.shape != (b, j, 2):
        raise ValueError(f"landmarks {xy.shape} do not match heatmap {hm.shape}: expected ({b}, {j}, 2)")
    off = (kernel_size - 1) // 2
    conf = np.pad(sigmoid(hm), ((0, 0), (0, 0), (off, off), (off, off)))  # zero border
    col = np.trunc(xy[..., 0] * wh).astype(np.int64)  # (B, J)
    row = np.trunc(xy[..., 1] * hh).astype(np.int64)
    inside = (col >= 0) & (col < wh) & (row >= 0) & (row < hh)
    col_c, row_c = np.clip(col, 0, wh - 1), np.clip(row, 0, hh - 1)
    k = np.arange(kernel_size)
    rows = row_c[..., None] + k  # (B, J, K) indices into the padded map
    cols = col_c[..., None] + k
    bi = np.arange(b)[:, None, None, None]
    ji = np.arange(j)[None, :, None, None]
    win = conf[bi, ji, rows[..., :, None], cols[..., None, :]]  # (B, J, K, K)
    total = win.sum((-1, -2))  # (B, J)
    peak = win.max((-1, -2))
    grid_r = (rows - off).astype(np.float32)  # un-padded cell indices
    grid_c = (cols - off).astype(np.float32)
    mean_r = (win.sum(-1) * grid_r).sum(-1) / np.where(total > 0, total, 1.0)
    mean_c = (win.sum(-2) * grid_c).sum(-1) / np.where(total > 0, total, 1.0)
    use = inside & (peak >= min_confidence) & (total > 0)
    out = xy.copy()
    out[..., 0] = np.where(use, mean_c / wh, xy[..., 0])
    out[..., 1] = np.where(use, mean_r / hh, xy[..., 1])
    return out


def landmark_confidence(raw_landmarks: np.ndarray) -> np.ndarray:
    """(B, J, 5) raw outputs -> (B, J) confidence = min(sigmoid(visibility), sigmoid(presence)).

    MediaPipe's *visibility* is the probability that the landmark is in the frame and not occluded, its
    *presence* that it is in the frame at all; the minimum is high only when both agree, and is what the
    lifter should weight a 2D joint by.
    """
    raw = np.asarray(raw_landmarks, dtype=np.float32)
    return np.minimum(sigmoid(raw[..., 3]), sigmoid(raw[..., 4]))


def project_to_image(xy_crop_edge: np.ndarray, rois: Sequence[Roi], crop_size: int = LANDMARK_INPUT_SIZE) -> np.ndarray:
    """(B, J, 2) crop coordinates in MediaPipe's edge convention (0..crop_size) -> (B, J, 2) image pixels."""
    xy = np.asarray(xy_crop_edge, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[0] != len(rois) or xy.shape[2] != 2:
        raise ValueError(f"expected ({len(rois)}, J, 2) crop points, got {xy.shape}")
    out = np.empty_like(xy)
    for i, roi in enumerate(rois):
        inv = crop_affine(roi, crop_size)[1]
        out[i] = (xy[i] - 0.5) @ inv[:, :2].T + inv[:, 2]  # edge -> pixel-centre, then crop -> image
    return out


def rotate_world(world_m: np.ndarray, rois: Sequence[Roi]) -> np.ndarray:
    """(B, J, 3) world landmarks (metres) rotated about z by each ROI's rotation (MediaPipe's projection)."""
    w = np.asarray(world_m, dtype=np.float64)
    if w.ndim != 3 or w.shape[0] != len(rois) or w.shape[2] != 3:
        raise ValueError(f"expected ({len(rois)}, J, 3) world landmarks, got {w.shape}")
    out = w.copy()
    for i, roi in enumerate(rois):
        r = roi.rotation_matrix()
        out[i, :, :2] = w[i, :, :2] @ r.T
    return out


def decode_landmarks(
    raw_landmarks: np.ndarray, rois: Sequence[Roi], heatmap_logits: np.ndarray | None = None,
    crop_size: int = LANDMARK_INPUT_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (B, 39, 5) outputs of B crops -> ``(points_px (B, 39, 2), confidence (B, 39))``.

    Heatmap refinement runs when ``heatmap_logits`` is given (NHWC or NCHW, see :func:`heatmap_to_nchw`).
    """
    raw = np.asarray(raw_landmarks, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[2] < 5:
        raise ValueError(f"raw landmarks must be (B, J, 5), got {raw.shape}")
    xy_edge = raw[..., :2]
    if heatmap_logits is not None:
        xy_norm = refine_from_heatmap(xy_edge / crop_size, heatmap_to_nchw(heatmap_logits, raw.shape[1]))
        xy_edge = xy_norm * crop_size
    return project_to_image(xy_edge, rois, crop_size), landmark_confidence(raw)


class OneEuroFilter:
    """MediaPipe's one-euro filter over a fixed-shape array of values (each element filtered on its own).

    ``__call__(value, stamp_s, value_scale)``: the first call returns ``value``; later calls use the
    frequency from the time stamps (the default frequency only until the second stamp). A stamp that does
    not increase returns ``value`` unfiltered and changes nothing (MediaPipe logs a warning there).
    """

    def __init__(self, min_cutoff: float = AUX_FILTER_MIN_CUTOFF, beta: float = AUX_FILTER_BETA,
                 derivate_cutoff: float = AUX_FILTER_DERIVATE_CUTOFF,
                 frequency_hz: float = DEFAULT_FREQUENCY_HZ) -> None:
        if min(min_cutoff, derivate_cutoff, frequency_hz) <= 0 or beta < 0:
            raise ValueError("one-euro filter needs positive cutoffs and frequency and beta >= 0")
        self.min_cutoff, self.beta, self.derivate_cutoff = min_cutoff, beta, derivate_cutoff
        self.frequency_hz = frequency_hz
        self._last_stamp: float | None = None
        self._raw: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray:
        te = 1.0 / self.frequency_hz
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
        return 1.0 / (1.0 + tau / te)

    def __call__(self, value: np.ndarray, stamp_s: float, value_scale: float = 1.0) -> np.ndarray:
        v = np.asarray(value, dtype=np.float64)
        if self._last_stamp is not None and stamp_s <= self._last_stamp:
            return v.copy()
        if self._last_stamp is not None:
            self.frequency_hz = 1.0 / (stamp_s - self._last_stamp)
        self._last_stamp = stamp_s
        if self._raw is None or self._x is None or self._dx is None:
            self._raw, self._x, self._dx = v.copy(), v.copy(), np.zeros_like(v)
            return v.copy()
        dvalue = (v - self._raw) * value_scale * self.frequency_hz
        a_d = self._alpha(self.derivate_cutoff)
        self._dx = a_d * dvalue + (1.0 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx))
        self._x = a * v + (1.0 - a) * self._x
        self._raw = v.copy()
        return self._x.copy()

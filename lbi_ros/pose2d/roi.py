"""Letterboxing to the detector input, MediaPipe's pose region-of-interest rule, and rotated square crops.

Conventions (the project's, see :mod:`lbi_ros.geometry`):

* **Pixels**: ``(u, v)`` in the input image, the centre of pixel index k at coordinate k (OpenCV). MediaPipe
  works in *normalised edge* coordinates (0 and 1 are the outer pixel edges); a normalised ``x`` is pixel
  ``u = x * W - 0.5``. A crop of N x N pixels uses the same convention: its pixel centres are 0 .. N-1, and
  the ROI centre lands on crop coordinate ``(N - 1) / 2``.
* **Rotation** (``Roi.rotation_rad``): MediaPipe's ``NormalizedRect.rotation``. A vector ``d`` along the
  crop's axes is ``R(theta) @ d`` in the image with ``R = [[cos, -sin], [sin, cos]]``; since image v points
  down, a positive angle turns the crop *clockwise* on screen. 0 = upright person.

The ROI rule (``pose_detection_to_roi.pbtxt`` and ``pose_landmarks_to_roi.pbtxt`` in
google-ai-edge/mediapipe 85c0cdc, Apache-2.0), from two alignment points in pixels:

* ``AlignmentPointsRectsCalculator`` (start keypoint 0, end keypoint 1): centre = point 0, square side =
  2 x |point 1 - point 0|; rotation = ``NormalizeRadians(pi/2 - atan2(-(v1 - v0), u1 - u0))``
  (``DetectionsToRectsCalculator::ComputeRotation`` with ``rotation_vector_target_angle_degrees: 90``), so a
  point 1 straight above point 0 gives 0.
* ``RectTransformationCalculator``: ``square_long`` (a no-op here, the rect is already square in pixels)
  and ``scale_x = scale_y = 1.25``. Side = 2.5 x |point 1 - point 0|.

From a detection the two points are the detector's keypoints 0 (mid-hip) and 1 (full-body size/rotation
point); from the previous frame's landmarks they are the auxiliary landmarks 33 and 34 of the 39
(``SplitNormalizedLandmarkListCalculator`` range 33..35), which the landmark model emits for exactly this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

ROI_SCALE = 1.25
TARGET_ANGLE_RAD = math.pi / 2

BorderMode = Literal["zero", "replicate"]


def normalize_radians(angle: float) -> float:
    """Wrap to [-pi, pi), as MediaPipe's ``NormalizeRadians``."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass(frozen=True)
class Roi:
    """A rotated square region of the image: centre (pixels), side (pixels), rotation (radians)."""

    center_u: float
    center_v: float
    size_px: float
    rotation_rad: float

    def __post_init__(self) -> None:
        values = (self.center_u, self.center_v, self.size_px, self.rotation_rad)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Roi fields must be finite, got {values}")
        if self.size_px <= 0:
            raise ValueError(f"Roi.size_px must be > 0, got {self.size_px}")

    @property
    def center(self) -> np.ndarray:
        return np.array([self.center_u, self.center_v])

    def rotation_matrix(self) -> np.ndarray:
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        return np.array([[c, -s], [s, c]])

    def corners(self) -> np.ndarray:
        """(4, 2) image pixels of the square's corners: crop top-left, top-right, bottom-right, bottom-left."""
        h = self.size_px / 2
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        return local @ self.rotation_matrix().T + self.center

    def bounding_box(self) -> np.ndarray:
        """(4,) axis-aligned ``[xmin, ymin, xmax, ymax]`` around the rotated square, pixels."""
        c = self.corners()
        return np.concatenate([c.min(0), c.max(0)])


# ---------------------------------------------------------------------------------------------------------
# Letterbox: the whole frame, aspect kept, into the square detector input
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """Frame -> square detector input, aspect kept, centred, padding zeros (``ImageToTensorCalculator``).

    ``scale`` input pixels per image pixel; ``pad_x``/``pad_y`` the padding in input pixels on the left/top
    (the same on the right/bottom). In edge coordinates ``e_input = scale * e_image + pad``.
    """

    image_width: int
    image_height: int
    size: int
    scale: float
    pad_x: float
    pad_y: float

    def matrix(self) -> np.ndarray:
        """2x3 image pixels -> input pixels (pixel-centre convention), for ``cv2.warpAffine``."""
        s = self.scale
        return np.array([[s, 0.0, 0.5 * s + self.pad_x - 0.5], [0.0, s, 0.5 * s + self.pad_y - 0.5]])

    def normalized_to_image(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) normalised detector-input coordinates (MediaPipe's) -> (..., 2) image pixels."""
        p = np.asarray(points, dtype=np.float64) * self.size  # input edge coordinates
        pad = np.array([self.pad_x, self.pad_y])
        return (p - pad) / self.scale - 0.5

    def image_to_normalized(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalized_to_image`."""
        p = np.asarray(points, dtype=np.float64)
        pad = np.array([self.pad_x, self.pad_y])
        return ((p + 0.5) * self.scale + pad) / self.size


def letterbox(image_width: int, image_height: int, size: int = 224) -> Letterbox:
    """The letterbox of a ``image_width`` x ``image_height`` frame into ``size`` x ``size``."""
    if image_width <= 0 or image_height <= 0 or size <= 0:
        raise ValueError(f"sizes must be positive, got image {image_width}x{image_height}, input {size}")
    scale = size / max(image_width, image_height)
    return Letterbox(
        image_width=image_width,
        image_height=image_height,
        size=size,
        scale=scale,
        pad_x=(size - image_width * scale) / 2,
        pad_y=(size - image_height * scale) / 2,
    )


def letterbox_image(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, C) uint8, bilinear, zero padding (MediaPipe's ``BORDER_ZERO``)."""
    import cv2

    if image.shape[:2] != (box.image_height, box.image_width):
        raise ValueError(f"image is {image.shape[:2]}, letterbox was made for {(box.image_height, box.image_width)}")
    return cv2.warpAffine(image, box.matrix(), (box.size, box.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# ---------------------------------------------------------------------------------------------------------
# The ROI rule
# ---------------------------------------------------------------------------------------------------------


def roi_from_alignment_points(
    center_px: np.ndarray, scale_point_px: np.ndarray, scale: float = ROI_SCALE,
    target_angle_rad: float = TARGET_ANGLE_RAD,
) -> Roi:
    """MediaPipe's pose ROI from its two alignment points (pixels, (2,) each); see the module docstring."""
    c = np.asarray(center_px, dtype=np.float64)
    p = np.asarray(scale_point_px, dtype=np.float64)
    if c.shape != (2,) or p.shape != (2,):
        raise ValueError(f"alignment points must have shape (2,), got {c.shape} and {p.shape}")
    du, dv = p - c
    side = 2.0 * math.hypot(du, dv) * scale
    if not side > 0:
        raise ValueError(f"degenerate alignment points: centre {c} and scale point {p} coincide")
    rotation = normalize_radians(target_angle_rad - math.atan2(-dv, du))
    return Roi(float(c[0]), float(c[1]), side, rotation)


def roi_from_detection_keypoints(keypoints_px: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """ROI from one detection's (K >= 2, 2) keypoints in image pixels (0 = mid-hip, 1 = full-body point)."""
    kp = np.asarray(keypoints_px)
    return roi_from_alignment_points(kp[0], kp[1], scale)


def roi_from_landmarks(landmarks_px: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """Next frame's ROI from this frame's (39, >= 2) landmarks in image pixels (aux landmarks 33 and 34)."""
    lm = np.asarray(landmarks_px)
    if lm.ndim != 2 or lm.shape[0] < 35 or lm.shape[1] < 2:
        raise ValueError(f"need the 39 landmarks (39, >= 2) incl. the auxiliary ones, got {lm.shape}")
    return roi_from_alignment_points(lm[33, :2], lm[34, :2], scale)


# ---------------------------------------------------------------------------------------------------------
# Rotated crops
# ---------------------------------------------------------------------------------------------------------


def crop_affine(roi: Roi, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """2x3 matrices ``(image -> crop, crop -> image)`` for an ``out_size`` square crop of ``roi``.

    ``crop -> image``: ``p_image = c + R(theta) @ (p_crop - (N - 1) / 2) * (size_px / N)`` (pixel centres);
    this is MediaPipe's ``LandmarkProjectionCalculator`` written in pixels. Use the first matrix with
    ``cv2.warpAffine(image, m, (N, N))``.
    """
    if out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    k = roi.size_px / out_size  # image pixels per crop pixel
    r = roi.rotation_matrix()
    m = np.full(2, (out_size - 1) / 2.0)
    inv = np.concatenate([k * r, (roi.center - k * r @ m)[:, None]], axis=1)  # crop -> image
    fwd = np.concatenate([r.T / k, (m - r.T @ roi.center / k)[:, None]], axis=1)  # image -> crop
    return fwd, inv


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 2) points through a 2x3 affine matrix."""
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:, :2].T + matrix[:, 2]


def crop_to_image(points_crop: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(..., 2) crop pixels (pixel centres) -> (..., 2) image pixels, rotation included."""
    return apply_affine(crop_affine(roi, out_size)[1], points_crop)


def image_to_crop(points_px: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(..., 2) image pixels -> (..., 2) crop pixels; inverse of :func:`crop_to_image`."""
    return apply_affine(crop_affine(roi, out_size)[0], points_px)


def crop_image(image: np.ndarray, roi: Roi, out_size: int, border: BorderMode = "zero") -> np.ndarray:
    """(H, W, C) uint8 -> (out_size, out_size, C) uint8: the rotated ROI sampled bilinearly, made upright.

    ``border``: ``"zero"`` (black, ``BORDER_CONSTANT`` 0) or ``"replicate"`` (MediaPipe's landmark crop
    default, ``ImageToTensorCalculatorOptions.border_mode`` unset = BORDER_REPLICATE).
    """
    import cv2

    modes = {"zero": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}
    if border not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {border!r}")
    fwd, _ = crop_affine(roi, out_size)
    return cv2.warpAffine(image, fwd, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=modes[border], borderValue=0)


# ---------------------------------------------------------------------------------------------------------
# The shared person crop (issue 18): one rule for training, evaluation, the node and the lifter's backbone
# ---------------------------------------------------------------------------------------------------------

PERSON_CROP_SIZE = 256
"""Side in pixels of the shared person crop (the BlazePose landmark-net input)."""


def person_roi_from_box(box_cx: float, box_cy: float, box_h: float) -> Roi:
    """The shared square crop from the deployment crop box (:func:`lbi_ros.preprocess.compute_crop_box`).

    Same centre as the box, side = box height, upright (rotation 0). The box is the visible joints' extent
    fixed to aspect 3:4 and padded x1.25, so the square is person-centred and about 1.25x the person's
    height, as the landmark net expects; because it shares the box's centre and vertical scale, a
    keypoint's crop-normalised coordinates ``(x, y)`` (the model input ``keypoints_crop``) are ``(x * w / h,
    y)`` in the square, with no extra input. Upright rather than MediaPipe's rotated ROI: the lifter's
    keypoint inputs are axis-aligned too, and the training renderer draws straight into this square by
    changing the intrinsics (:mod:`lbi_ros.training.square_crops`).
    """
    return Roi(float(box_cx), float(box_cy), float(box_h), 0.0)


def person_roi_from_keypoints(keypoints_px: np.ndarray) -> Roi | None:
    """The shared square crop from H36M-17 keypoints (17, 3) ``[u, v, conf]`` px; None without a visible joint."""
    from lbi_ros.preprocess import compute_crop_box

    box = compute_crop_box(np.asarray(keypoints_px))
    return None if box is None else person_roi_from_box(box.cx, box.cy, box.h)


def crop_person_square(image_rgb: np.ndarray, roi: Roi, size: int = PERSON_CROP_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: the shared square crop of an upright ``roi``, cut by exactly the
    warp the lifter's own crop uses (:func:`lbi_ros.preprocess.warp_crop`: bilinear, black outside the image),
    so a landmark pass on it sees the very pixels the lifter's backbone would."""
    from lbi_ros.preprocess import CropBox, CropConfig, warp_crop

    if roi.rotation_rad != 0.0:
        raise ValueError(f"the shared person crop is upright; got rotation {roi.rotation_rad} rad")
    box = CropBox(roi.center_u, roi.center_v, roi.size_px, roi.size_px)
    return warp_crop(image_rgb, box, CropConfig(height=size, width=size))


@dataclass(frozen=True, eq=False)
class SharedCrop:
    """One person's shared square crop, and the lifter backbone's map of it if someone already computed it.

    ``roi``: upright, image pixels (:func:`person_roi_from_keypoints` of the previous frame's keypoints, in the
    built-in detector). ``features``: (C, g, g) float32, the landmark-net tap on :func:`crop_person_square`
    of ``roi``; None = the lifter cuts that crop and runs its backbone itself. The lifter's box is then the
    one this square was made from (same centre, height = side), not the box of this frame's keypoints.
    """

    roi: Roi
    features: np.ndarray | None = None

"""The one preprocessing path: 2D keypoints + intrinsics + image -> model inputs.

Training (rendered crops), evaluation (Human3.6M / 3DHP frames), benchmarks and the ROS node all build the
model inputs here, so a crop seen in training is built by the same box rule and the same normalisation as
a crop seen at deployment.

Pipeline for one person::

    keypoints_px (17, 3) [u, v, conf]  --compute_crop_box-->  CropBox
    image (H, W, 3) uint8, CropBox      --warp_crop-------->  crop (128, 96, 3) uint8 RGB
    crop, keypoints_px, CropBox, K      --encode_person---->  ModelInputs (B = 1)

The renderer skips ``warp_crop``: it renders the crop directly with :meth:`CropBox.crop_intrinsics`, which
gives the same pixels ``warp_crop`` would sample from a full-frame render.

Distorted cameras: keypoints and boxes live in the camera's *ideal pinhole image* (keypoints undistorted
with :meth:`~lbi_ros.lens.LensDistortion.undistort`), and ``warp_crop`` with a ``lens`` samples the
raw image through the lens model (:func:`lbi_ros.lens.lens_sampling_map`), so the crop shows what a pinhole camera
with the crop intrinsics would see: the same pixels training renders.

Model-input contract (float32, bound by name):

* ``image_crop``     (B, 3, H, W): RGB, ImageNet mean/std normalised.
* ``keypoints_crop`` (B, 17, 3): ``x = 2 (u - box_cx) / box_w``, ``y = 2 (v - box_cy) / box_h`` (the box
  maps to [-1, 1]; equivalently ``x = u_crop / (W/2) - 1`` with ``u_crop`` measured from the crop's left
  *edge*), then the confidence. Missing joints (confidence <= ``min_confidence``) have all three set to 0.
  Joints outside the box keep |x| > 1 (not clipped).
* ``keypoints_cam``  (B, 17, 2): ``((u - cx)/fx, (v - cy)/fy)``; 0 for missing joints.
* ``crop_cam``       (B, 4): ``[(box_cx - cx)/fx, (box_cy - cy)/fy, box_w/fx, box_h/fy]``.

Pixel convention: the centre of pixel index k is at coordinate k (OpenCV), for the image and the crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from lbi_ros.geometry import Intrinsics
from lbi_ros.lens import LensDistortion, lens_sampling_map
from lbi_ros.skeleton import NUM_JOINTS, map_to_h36m

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NAMES = ("image_crop", "keypoints_crop", "keypoints_cam", "crop_cam")


@dataclass(frozen=True)
class CropConfig:
    """Crop geometry and normalisation (deployment profile: 128 x 96)."""

    height: int = 128
    width: int = 96
    padding: float = 1.25  # box = visible joints' extent (fixed to the crop aspect) x padding
    min_box_height_px: float = 24.0  # guard against degenerate boxes (one visible joint, tiny persons)
    min_confidence: float = 0.05  # joints at or below this confidence are missing
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"crop size must be at least 8x8, got {self.height}x{self.width}")
        if not self.padding >= 1.0:
            raise ValueError(f"padding must be >= 1, got {self.padding}")
        if not self.min_box_height_px > 0:
            raise ValueError(f"min_box_height_px must be > 0, got {self.min_box_height_px}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def aspect(self) -> float:
        """Box width / height (0.75 for 128 x 96)."""
        return self.width / self.height


@dataclass(frozen=True)
class CropBox:
    """Axis-aligned person box in full-image pixels, with the crop's aspect ratio.

    ``cx, cy`` centre (pixel-index convention), ``w, h`` size in pixels.
    """

    cx: float
    cy: float
    w: float
    h: float

    def __post_init__(self) -> None:
        if not (self.w > 0 and self.h > 0) or not all(map(math.isfinite, (self.cx, self.cy, self.w, self.h))):
            raise ValueError(f"invalid crop box {self}")

    def as_array(self) -> np.ndarray:
        """``[cx, cy, w, h]`` float32."""
        return np.array([self.cx, self.cy, self.w, self.h], dtype=np.float32)

    @classmethod
    def from_array(cls, a: Any) -> CropBox:
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]))

    def affine(self, out_height: int, out_width: int) -> np.ndarray:
        """2x3 matrix mapping full-image pixels to crop pixels (for ``cv2.warpAffine``).

        Crop pixel i's centre (edge coordinate i + 0.5) samples image coordinate
        ``cx + (i + 0.5 - W/2) * w / W``.
        """
        sx, sy = out_width / self.w, out_height / self.h
        return np.array(
            [[sx, 0.0, out_width / 2 - 0.5 - self.cx * sx], [0.0, sy, out_height / 2 - 0.5 - self.cy * sy]],
            dtype=np.float64,
        )

    def to_crop_pixels(self, pixels: Any, out_height: int, out_width: int) -> np.ndarray:
        """Full-image pixels (..., 2) -> crop pixel-index coordinates (..., 2)."""
        p = np.asarray(pixels, dtype=np.float64)
        m = self.affine(out_height, out_width)
        return np.stack([p[..., 0] * m[0, 0] + m[0, 2], p[..., 1] * m[1, 1] + m[1, 2]], -1)

    def crop_intrinsics(self, intrinsics: Intrinsics, out_height: int, out_width: int) -> Intrinsics:
        """Intrinsics of a virtual camera whose image *is* the crop (used to render crops directly)."""
        m = self.affine(out_height, out_width)
        return Intrinsics(
            fx=intrinsics.fx * m[0, 0],
            fy=intrinsics.fy * m[1, 1],
            cx=intrinsics.cx * m[0, 0] + m[0, 2],
            cy=intrinsics.cy * m[1, 1] + m[1, 2],
        )

    def jittered(self, rng: np.random.Generator, scale: float = 0.1, shift: float = 0.05) -> CropBox:
        """Training augmentation: size x U(1 - scale, 1 + scale), centre + U(-shift, shift) x size."""
        k = 1.0 + rng.uniform(-scale, scale)
        dx, dy = rng.uniform(-shift, shift, size=2)
        return CropBox(self.cx + dx * self.w, self.cy + dy * self.h, self.w * k, self.h * k)


def visible_mask(keypoints_px: np.ndarray, min_confidence: float) -> np.ndarray:
    """(..., J, 3) -> (..., J) bool: confidence above threshold and finite coordinates."""
    kp = np.asarray(keypoints_px)
    return (kp[..., 2] > min_confidence) & np.all(np.isfinite(kp[..., :2]), axis=-1)


def compute_crop_box(keypoints_px: np.ndarray, config: CropConfig = CropConfig()) -> CropBox | None:
    """The box rule: visible joints' extent, widened to the crop aspect, x padding, min-size guard.

    ``keypoints_px`` (J, 3) ``[u, v, conf]``. Returns None when no joint is visible.
    """
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 3:
        raise ValueError(f"keypoints_px must have shape (J, 3), got {kp.shape}")
    vis = visible_mask(kp, config.min_confidence)
    if not vis.any():
        return None
    pts = kp[vis, :2]
    lo, hi = pts.min(0), pts.max(0)
    cx, cy = (lo + hi) / 2
    w, h = hi - lo
    aspect = config.aspect
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    h *= config.padding
    h = max(h, config.min_box_height_px)
    return CropBox(float(cx), float(cy), float(h * aspect), float(h))


def warp_crop(
    image: np.ndarray,
    box: CropBox,
    config: CropConfig = CropConfig(),
    color_order: Literal["rgb", "bgr"] = "rgb",
    lens: LensDistortion | None = None,
    intrinsics: Intrinsics | None = None,
) -> np.ndarray:
    """Cut the box out of ``image`` (H, W, 3) uint8 -> crop (height, width, 3) uint8 RGB.

    Without ``lens`` (a pinhole or rectified image) this is one affine warp. With ``lens`` (and the
    camera's ``intrinsics``) the box is in the ideal pinhole image and the crop is sampled from the raw
    image through the lens model (:func:`lbi_ros.lens.lens_sampling_map`, the crop being a pinhole camera
    with :meth:`CropBox.crop_intrinsics`). Bilinear sampling; pixels outside the
    image are black (the renderer reproduces this).
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if color_order not in ("rgb", "bgr"):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    if lens is None:
        crop = cv2.warpAffine(
            image,
            box.affine(config.height, config.width),
            (config.width, config.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
    else:
        if intrinsics is None:
            raise ValueError("warp_crop with a lens needs the camera intrinsics")
        crop_camera = box.crop_intrinsics(intrinsics, config.height, config.width)
        map_x, map_y = lens_sampling_map(crop_camera, (config.height, config.width), intrinsics, lens,
                                         (image.shape[1], image.shape[0]))
        crop = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    if color_order == "bgr":
        crop = crop[..., ::-1]
    return crop


def normalize_image(crop_rgb: np.ndarray, config: CropConfig = CropConfig()) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ImageNet mean/std."""
    if crop_rgb.shape != (config.height, config.width, 3):
        raise ValueError(f"crop must be ({config.height}, {config.width}, 3), got {crop_rgb.shape}")
    out = np.empty((3, config.height, config.width), dtype=np.float32)
    for c in range(3):  # per channel: strided read, contiguous write (4x faster than a broadcast + transpose)
        np.multiply(crop_rgb[:, :, c], 1.0 / (255.0 * config.std[c]), out=out[c], casting="unsafe")
        out[c] -= config.mean[c] / config.std[c]
    return out


def denormalize_image(image_chw: np.ndarray, config: CropConfig = CropConfig()) -> np.ndarray:
    """Inverse of :func:`normalize_image` (for previews): (3, H, W) float -> (H, W, 3) uint8 RGB."""
    mean = np.array(config.mean, dtype=np.float32)[:, None, None]
    std = np.array(config.std, dtype=np.float32)[:, None, None]
    return np.clip((image_chw * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


@dataclass(frozen=True)
class ModelInputs:
    """A batch of model inputs (float32 numpy arrays); field names are the ONNX/engine tensor names."""

    image_crop: np.ndarray  # (B, 3, H, W)
    keypoints_crop: np.ndarray  # (B, 17, 3)
    keypoints_cam: np.ndarray  # (B, 17, 2)
    crop_cam: np.ndarray  # (B, 4)

    def __post_init__(self) -> None:
        b = self.image_crop.shape[0] if self.image_crop.ndim == 4 else -1
        expect = {
            "image_crop": (b, 3) + tuple(self.image_crop.shape[2:]),
            "keypoints_crop": (b, NUM_JOINTS, 3),
            "keypoints_cam": (b, NUM_JOINTS, 2),
            "crop_cam": (b, 4),
        }
        for name, shape in expect.items():
            arr = getattr(self, name)
            if b < 0 or tuple(arr.shape) != shape:
                raise ValueError(f"ModelInputs.{name}: expected shape {shape}, got {tuple(arr.shape)}")
            if arr.dtype != np.float32:
                raise ValueError(f"ModelInputs.{name}: expected float32, got {arr.dtype}")

    def __len__(self) -> int:
        return int(self.image_crop.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in INPUT_NAMES}

    def to_torch(self, device: Any = "cpu") -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v).to(device) for k, v in self.as_dict().items()}

    @classmethod
    def concat(cls, items: Sequence[ModelInputs]) -> ModelInputs:
        if not items:
            raise ValueError("cannot concatenate zero ModelInputs")
        return cls(**{n: np.concatenate([getattr(i, n) for i in items], 0) for n in INPUT_NAMES})

    def select(self, index: Any) -> ModelInputs:
        return ModelInputs(**{n: np.ascontiguousarray(getattr(self, n)[index]) for n in INPUT_NAMES})


def encode_keypoints(
    keypoints_px: np.ndarray, box: CropBox, intrinsics: Intrinsics, config: CropConfig = CropConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(17, 3) pixels -> (keypoints_crop (17, 3), keypoints_cam (17, 2), crop_cam (4,)), float32."""
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.shape != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints_px must be H36M-17 (17, 3) [u, v, conf], got {kp.shape}")
    vis = visible_mask(kp, config.min_confidence)
    u = np.where(vis, kp[:, 0], 0.0)
    v = np.where(vis, kp[:, 1], 0.0)
    kc = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    kc[:, 0] = np.where(vis, 2.0 * (u - box.cx) / box.w, 0.0)
    kc[:, 1] = np.where(vis, 2.0 * (v - box.cy) / box.h, 0.0)
    kc[:, 2] = np.where(vis, kp[:, 2], 0.0)
    kcam = np.zeros((NUM_JOINTS, 2), dtype=np.float32)
    kcam[:, 0] = np.where(vis, (u - intrinsics.cx) / intrinsics.fx, 0.0)
    kcam[:, 1] = np.where(vis, (v - intrinsics.cy) / intrinsics.fy, 0.0)
    crop_cam = np.array(
        [
            (box.cx - intrinsics.cx) / intrinsics.fx,
            (box.cy - intrinsics.cy) / intrinsics.fy,
            box.w / intrinsics.fx,
            box.h / intrinsics.fy,
        ],
        dtype=np.float32,
    )
    return kc, kcam, crop_cam


def square_box(box: CropBox) -> CropBox:
    """The shared square person crop (:func:`lbi_ros.pose2d.roi.person_roi_from_box`) as a box: same centre,
    side = ``box.h``, upright. Warped to N x N it is the ``lbi_gated`` lifter's ``image_crop``."""
    return CropBox(box.cx, box.cy, box.h, box.h)


def encode_person(
    crop_rgb: np.ndarray,
    keypoints_px: np.ndarray,
    box: CropBox,
    intrinsics: Intrinsics,
    config: CropConfig = CropConfig(),
    image_config: CropConfig | None = None,
) -> ModelInputs:
    """One person's crop (H, W, 3) uint8 RGB + H36M-17 keypoints (17, 3) px -> ModelInputs with B = 1.

    ``image_config``: the crop's own size when it is not ``config``'s (the shared square crop, :func:`square_box`).
    """
    kc, kcam, ccam = encode_keypoints(keypoints_px, box, intrinsics, config)
    return ModelInputs(
        image_crop=normalize_image(crop_rgb, image_config or config)[None],
        keypoints_crop=kc[None],
        keypoints_cam=kcam[None],
        crop_cam=ccam[None],
    )


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for the persons that had a visible joint, plus what postprocessing needs.

    ``person_index[b]`` is the input row (person) that batch row b came from; ``keypoints_px`` (B, 17, 3)
    are the H36M-17 keypoints (after mapping) in full-image pixels; ``boxes`` one CropBox per row.
    """

    inputs: ModelInputs | None
    boxes: tuple[CropBox, ...]
    keypoints_px: np.ndarray
    person_index: np.ndarray


def prepare_inputs(
    image: np.ndarray,
    keypoints_px: np.ndarray,
    intrinsics: Intrinsics,
    config: CropConfig = CropConfig(),
    joint_set: str = "h36m17",
    color_order: Literal["rgb", "bgr"] = "rgb",
    lens: LensDistortion | None = None,
    square_size: int | None = None,
    given_boxes: Sequence[CropBox | None] | None = None,
    cut: Sequence[bool] | None = None,
) -> PreparedBatch:
    """Full frame + detections -> model inputs: the deployment entry point.

    ``image`` (H, W, 3) uint8; ``keypoints_px`` (P, J, 3) ``[u, v, conf]`` in ``joint_set`` layout
    (mapped to H36M-17 here). Persons without any visible joint are skipped (see ``person_index``).
    ``lens``: the image is raw from a distorted camera; the keypoints must already be undistorted (ideal
    pinhole pixels, :meth:`LensDistortion.undistort`) and the crops are sampled through the lens.
    ``square_size``: the image input is the shared square crop (:func:`square_box`) at that size, not the box.
    ``given_boxes``: per person, a box to use instead of the box rule (None: the rule). ``cut``: per person, False =
    no crop is cut and ``image_crop`` stays zero (the caller holds the backbone's map of that crop already).
    """
    image_config = None if square_size is None else replace(config, height=square_size, width=square_size)
    kp = np.asarray(keypoints_px, dtype=np.float32)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints_px must have shape (P, J, 3), got {np.shape(keypoints_px)}")
    kp17 = map_to_h36m(kp, joint_set) if joint_set != "h36m17" else kp
    items, boxes, rows = [], [], []
    for p in range(kp17.shape[0]):
        box = (given_boxes[p] if given_boxes is not None else None) or compute_crop_box(kp17[p], config)
        if box is None:
            continue
        if cut is not None and not cut[p]:
            size, (kc, kcam, ccam) = image_config or config, encode_keypoints(kp17[p], box, intrinsics, config)
            items.append(ModelInputs(np.zeros((1, 3, size.height, size.width), np.float32), kc[None], kcam[None], ccam[None]))
        else:
            crop = warp_crop(image, box if image_config is None else square_box(box), image_config or config,
                             color_order, lens=lens, intrinsics=intrinsics)
            items.append(encode_person(crop, kp17[p], box, intrinsics, config, image_config))
        boxes.append(box)
        rows.append(p)
    return PreparedBatch(
        inputs=ModelInputs.concat(items) if items else None,
        boxes=tuple(boxes),
        keypoints_px=kp17[rows] if rows else np.zeros((0, NUM_JOINTS, 3), np.float32),
        person_index=np.array(rows, dtype=np.int64),
    )

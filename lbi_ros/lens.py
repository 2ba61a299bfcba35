"""Lens distortion: the ``sensor_msgs/CameraInfo`` lens models, and images seen through them.

The project works in each camera's *ideal pinhole image* (same K, no distortion). A distorted camera's
keypoints are moved there with :meth:`LensDistortion.undistort`; its image is never undistorted as a
whole: each crop is a small pinhole camera of its own (:meth:`lbi_ros.preprocess.CropBox.crop_intrinsics`)
and :func:`lens_sampling_map` says which raw pixel each of its pixels sees (crop pixel -> normalised ray
through the crop intrinsics -> the lens model -> raw pixel), for one ``cv2.remap``. OpenCV implements the
models (``cv2.projectPoints`` / ``cv2.fisheye.projectPoints`` and their inverses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from lbi_ros.geometry import Intrinsics

# Lens models we handle, as named in sensor_msgs/CameraInfo.distortion_model, with the coefficient counts
# OpenCV accepts for each: plumb_bob (Brown-Conrady: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1..s4 [tx ty]]]]; ROS
# fills 5), rational_polynomial (8, ROS's name for the same OpenCV model with k4..k6), equidistant
# (the fisheye model, k1..k4).
LENS_MODELS: dict[str, tuple[int, ...]] = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14),
                                           "equidistant": (4,)}
LensModelName = Literal["plumb_bob", "rational_polynomial", "equidistant"]


@dataclass(frozen=True)
class LensDistortion:
    """A calibrated lens distortion (``CameraInfo.distortion_model`` + ``d``) on top of :class:`Intrinsics`.

    The project works in the *ideal pinhole image* of the camera (same K, no distortion): keypoints are
    moved there with :meth:`undistort`, and image crops are sampled through :meth:`distort` (a crop
    pixel's ray -> the raw pixel that saw it, see :func:`lens_sampling_map`).
    Hashable, so per-camera work can be cached on it.
    """

    model: LensModelName
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise ValueError(f"lens model {self.model!r} is not supported; use one of {sorted(LENS_MODELS)} "
                             "or rectified images (no distortion)")
        if len(self.coefficients) not in LENS_MODELS[self.model]:
            raise ValueError(f"{self.model} needs {LENS_MODELS[self.model]} coefficients, got {len(self.coefficients)}")
        if not all(math.isfinite(c) for c in self.coefficients):
            raise ValueError(f"lens coefficients must be finite, got {self.coefficients}")
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))

    def distort(self, rays_xy: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Normalised ideal rays ``(x/z, y/z)`` (..., 2) -> raw (distorted) pixels (..., 2), float64."""
        import cv2

        xy = np.asarray(rays_xy, dtype=np.float64)
        rays = np.concatenate([xy.reshape(-1, 2), np.ones((xy[..., 0].size, 1))], 1)[:, None, :]  # (N, 1, 3)
        d = np.asarray(self.coefficients, dtype=np.float64)
        zero = np.zeros(3)
        if self.model == "equidistant":
            px = cv2.fisheye.projectPoints(rays, zero, zero, intrinsics.matrix(), d)[0]
        else:
            px = cv2.projectPoints(rays, zero, zero, intrinsics.matrix(), d)[0]
        return px.reshape(xy.shape)

    def undistort(self, pixels: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Raw pixels (..., 2) -> pixels of the ideal pinhole image with the same K (..., 2), float64."""
        import cv2

        uv = np.asarray(pixels, dtype=np.float64)
        if uv[..., 0].size == 0:
            return uv.copy()
        points = uv.reshape(-1, 1, 2)
        k, d = intrinsics.matrix(), np.asarray(self.coefficients, dtype=np.float64)
        if self.model == "equidistant":
            moved = cv2.fisheye.undistortPoints(points, k, d, P=k)
        else:
            # OpenCV's default (5 fixed-point iterations) is off by up to ~200 px in the corners of a strong
            # barrel lens (k1 = -0.35); iterating to convergence brings that under 0.2 px.
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
            moved = cv2.undistortPoints(points, k, d, None, None, k, criteria)
        return moved.reshape(uv.shape)


MAP_GRID_CELL_PX = 8.0
"""Raw-image pixels (at the image centre's scale) spanned by one cell of exactly projected rays of a sampling map;
bilinear in between (see below). The step in crop pixels follows from the crop's zoom, between 1 and 16."""


# Sampling maps are cached per (view intrinsics and size, camera, lens, image size): a repeated crop box
# (a still person, fixed evaluation boxes, replays) costs one cv2.remap. A new box (a moving person: almost
# every frame) costs the lens projection of a grid of rays, one every MAP_GRID_CELL_PX raw pixels, plus a
# bilinear fill: projecting every pixel of a 256 x 256 crop took 25 ms on one core, the grid 1-3 ms. The lens
# maps are smooth, so the fill stays within ~0.1 raw px of the exact map inside the field (strong lenses at
# f = 300 px, test/test_preprocess.py); cells that touch the edge of the field, where the polynomial folds
# back, are projected exactly. An entry is 2 x 256 KB at 256 x 256.
@lru_cache(maxsize=64)
def lens_sampling_map(view: Intrinsics, view_size: tuple[int, int], camera: Intrinsics, lens: LensDistortion,
                      image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Where in the raw, distorted image each pixel of a virtual pinhole ``view`` samples.

    ``view`` (intrinsics) and ``view_size`` (height, width) describe the pinhole image wanted (a crop:
    :meth:`~lbi_ros.preprocess.CropBox.crop_intrinsics`), ``camera`` and ``lens`` the real camera,
    ``image_size`` (width, height) its raw image. Returns ``(map_x, map_y)``, each (height, width)
    float32 raw-pixel coordinates for ``cv2.remap`` (read-only: cached). Rays outside the field the
    camera sees (farther off-axis than any ray through the image border) map to -1 (black): a polynomial
    lens model folds back beyond its calibrated field and would paint image content there.
    """
    height, width = view_size
    xs = (np.arange(width, dtype=np.float64) - view.cx) / view.fx  # ray x/z per crop column
    ys = (np.arange(height, dtype=np.float64) - view.cy) / view.fy  # ray y/z per crop row
    field = _field_radius(camera, lens, image_size)
    step = int(np.clip(MAP_GRID_CELL_PX * min(view.fx, view.fy) / max(camera.fx, camera.fy), 1, 16))
    nodes_x, nodes_y = _grid_nodes(width, step), _grid_nodes(height, step)
    node_rays = np.stack(np.meshgrid(xs[nodes_x], ys[nodes_y]), -1)  # (ny, nx, 2)
    node_raw = lens.distort(node_rays, camera)  # (ny, nx, 2) raw pixels, exact
    fill_x, fill_y = _linear_fill(width, nodes_x), _linear_fill(height, nodes_y)  # (W, nx), (H, ny)
    raw = np.stack([fill_y @ node_raw[..., k] @ fill_x.T for k in (0, 1)], -1)  # (H, W, 2)
    outside = np.hypot(xs[None, :], ys[:, None]) > field  # (H, W)
    node_outside = np.hypot(node_rays[..., 0], node_rays[..., 1]) > field
    if node_outside.any():  # a fill across the fold-back is wrong: project those cells' field pixels exactly
        exact = ((fill_y @ node_outside.astype(np.float64) @ fill_x.T) > 0) & ~outside
        if exact.any():
            rows, cols = np.nonzero(exact)
            raw[rows, cols] = lens.distort(np.stack([xs[cols], ys[rows]], -1), camera)
    raw[outside] = -1.0
    map_x, map_y = (np.ascontiguousarray(raw[..., k], dtype=np.float32) for k in (0, 1))
    map_x.flags.writeable = map_y.flags.writeable = False
    return map_x, map_y


def _grid_nodes(size: int, step: int) -> np.ndarray:
    """Indices 0, step, 2 step, ... and the last one: where the map is projected exactly."""
    return np.unique(np.r_[np.arange(0, size, step), size - 1])


def _linear_fill(size: int, nodes: np.ndarray) -> np.ndarray:
    """(size, len(nodes)) weights of linear interpolation between neighbouring nodes; rows sum to 1."""
    weights = np.zeros((size, len(nodes)))
    if len(nodes) == 1:  # a one-pixel side: its only node
        weights[:, 0] = 1.0
        return weights
    index = np.arange(size, dtype=np.float64)
    k = np.clip(np.searchsorted(nodes, index, side="right") - 1, 0, len(nodes) - 2)  # left node of each pixel
    t = (index - nodes[k]) / (nodes[k + 1] - nodes[k])
    weights[np.arange(size), k] = 1.0 - t
    weights[np.arange(size), k + 1] = t
    return weights


@lru_cache(maxsize=16)
def _field_radius(camera: Intrinsics, lens: LensDistortion, image_size: tuple[int, int]) -> float:
    """Largest normalised ray radius the camera sees: rays through the raw image border, undistorted (x 1.02)."""
    width, height = image_size
    xs, ys = np.linspace(-0.5, width - 0.5, 64), np.linspace(-0.5, height - 0.5, 64)
    border = np.concatenate([np.stack([xs, np.full(64, -0.5)], 1), np.stack([xs, np.full(64, height - 0.5)], 1),
                             np.stack([np.full(64, -0.5), ys], 1), np.stack([np.full(64, width - 0.5), ys], 1)])
    ideal = lens.undistort(border, camera)
    radius = np.hypot((ideal[:, 0] - camera.cx) / camera.fx, (ideal[:, 1] - camera.cy) / camera.fy)
    radius = radius[np.isfinite(radius)]
    return float(radius.max()) * 1.02 if radius.size else math.inf

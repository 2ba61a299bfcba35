"""Camera geometry: pinhole projection, frames, screen normalisation, Procrustes, metric root recovery.

Conventions (used across the project):

* **Camera frame**: OpenCV / ROS optical frame: x right, y down, z forward (depth), metres.
* **Pixels**: ``(u, v)`` with the centre of pixel index k at coordinate k (OpenCV); intrinsics
  ``(fx, fy, cx, cy)`` in the same convention, so ``u = fx * x / z + cx``.
* **World**: ``x_cam = R @ x_world + t`` (``R`` world->camera rotation, ``t`` camera-frame translation).
* **Root-relative**: joints minus the root (pelvis, joint 0), in the camera frame.

Functions accept numpy arrays or torch tensors (dispatch on the input type; torch is never imported by
this module) and broadcast over leading batch axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # np.ndarray | torch.Tensor


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _xp(x: Any):
    if _is_torch(x):
        import torch

        return torch
    return np


# ---------------------------------------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (lens distortion, where there is one: :class:`lbi_ros.lens.LensDistortion`)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise ValueError(f"Intrinsics.{name} must be finite, got {v}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    def as_array(self, dtype: Any = np.float64) -> np.ndarray:
        """``[fx, fy, cx, cy]``, shape (4,)."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=dtype)

    def matrix(self) -> np.ndarray:
        """3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_matrix(cls, k: Any) -> Intrinsics:
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f"camera matrix must have 9 entries, got {k.size}")
        return cls(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        """Square pixels, centred principal point, horizontal field of view in degrees."""
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(fx=f, fy=f, cx=(width - 1) / 2, cy=(height - 1) / 2)


def _intr(intrinsics: Intrinsics | Array, like: Array) -> tuple[Array, Array, Array, Array]:
    """Return fx, fy, cx, cy broadcastable against ``like[..., 0]``."""
    if isinstance(intrinsics, Intrinsics):
        return intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    xp = _xp(like)
    k = intrinsics
    if xp is np:
        k = np.asarray(k, dtype=like.dtype if np.issubdtype(np.asarray(like).dtype, np.floating) else None)
    elif not _is_torch(k):
        k = xp.as_tensor(np.asarray(k), dtype=like.dtype, device=like.device)
    if k.shape[-1] != 4:
        raise ValueError(f"intrinsics must be Intrinsics or (..., 4) [fx, fy, cx, cy], got shape {tuple(k.shape)}")
    return k[..., 0:1], k[..., 1:2], k[..., 2:3], k[..., 3:4]


# ---------------------------------------------------------------------------------------------------------
# Projection and frames
# ---------------------------------------------------------------------------------------------------------


def project(points_cam: Array, intrinsics: Intrinsics | Array, eps: float = 1e-9) -> Array:
    """Camera-frame points (..., N, 3) -> pixels (..., N, 2).

    Array intrinsics have shape (..., 4) and broadcast over the N axis (one camera per leading index).
    Points at or behind the camera (z <= eps) give non-finite pixels.
    """
    xp = _xp(points_cam)
    if points_cam.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {tuple(points_cam.shape)}")
    fx, fy, cx, cy = _intr(intrinsics, points_cam[..., 0])
    z = points_cam[..., 2]
    z = xp.where(z > eps, z, xp.full_like(z, float("nan")) if xp is not np else np.nan)
    u = fx * points_cam[..., 0] / z + cx
    v = fy * points_cam[..., 1] / z + cy
    return xp.stack([u, v], -1)


def unproject(pixels: Array, depth: Array, intrinsics: Intrinsics | Array) -> Array:
    """Pixels (..., N, 2) and depths z (..., N) -> camera-frame points (..., N, 3)."""
    xp = _xp(pixels)
    fx, fy, cx, cy = _intr(intrinsics, pixels[..., 0])
    x = (pixels[..., 0] - cx) / fx * depth
    y = (pixels[..., 1] - cy) / fy * depth
    return xp.stack([x, y, depth + 0 * x], -1)


def pixels_to_camera_rays(pixels: Array, intrinsics: Intrinsics | Array) -> Array:
    """Pixels (..., N, 2) -> normalised image coordinates ``((u-cx)/fx, (v-cy)/fy)`` (..., N, 2)."""
    xp = _xp(pixels)
    fx, fy, cx, cy = _intr(intrinsics, pixels[..., 0])
    return xp.stack([(pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy], -1)


def world_to_camera(points_world: Array, rotation: Array, translation: Array) -> Array:
    """``x_cam = R x_world + t``; points (..., N, 3), R (..., 3, 3), t (..., 3)."""
    xp = _xp(points_world)
    return xp.einsum("...ij,...nj->...ni", rotation, points_world) + translation[..., None, :]


def camera_to_world(points_cam: Array, rotation: Array, translation: Array) -> Array:
    """Inverse of :func:`world_to_camera`: ``x_world = R^T (x_cam - t)``."""
    xp = _xp(points_cam)
    return xp.einsum("...ji,...nj->...ni", rotation, points_cam - translation[..., None, :])


def to_root_relative(joints: Array, root_index: int = 0) -> tuple[Array, Array]:
    """(..., J, 3) -> (root-relative joints (..., J, 3) with joint ``root_index`` = 0, root (..., 3))."""
    root = joints[..., root_index, :]
    return joints - root[..., None, :], root


def from_root_relative(joints_rel: Array, root: Array) -> Array:
    """Root-relative (..., J, 3) + root (..., 3) -> camera-frame joints (..., J, 3)."""
    return joints_rel + root[..., None, :]


def normalize_screen_coordinates(pixels: Array, width: Array, height: Array) -> Array:
    """VideoPose3D screen normalisation: x in [-1, 1] over the image width, y scaled by the same factor.

    ``x_n = 2 u / w - 1``, ``y_n = 2 v / w - h / w`` (aspect ratio kept). Used by the 2D-lifting
    literature on Human3.6M; the LBI model itself uses crop- and camera-normalised coordinates.
    """
    xp = _xp(pixels)
    return xp.stack([pixels[..., 0] / width * 2 - 1, pixels[..., 1] / width * 2 - height / width], -1)


def image_coordinates(normalized: Array, width: Array, height: Array) -> Array:
    """Inverse of :func:`normalize_screen_coordinates`."""
    xp = _xp(normalized)
    return xp.stack([(normalized[..., 0] + 1) * width / 2, (normalized[..., 1] + height / width) * width / 2], -1)


def rotation_matrix(axis: str, angle: Array) -> np.ndarray:
    """Right-handed rotation about ``'x'``, ``'y'`` or ``'z'`` by ``angle`` radians; (..., 3, 3) numpy."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    elif axis == "z":
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    else:
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    return np.stack([np.stack(r, -1) for r in rows], -2)


def quaternion_to_matrix(q: Array) -> np.ndarray:
    """Unit quaternions (..., 4) ``[w, x, y, z]`` -> rotation matrices (..., 3, 3) (numpy)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


# ---------------------------------------------------------------------------------------------------------
# Procrustes
# ---------------------------------------------------------------------------------------------------------


def procrustes_align(
    predicted: Array, target: Array, scale: bool = True, return_transform: bool = False
) -> Array | tuple[Array, Array, Array, Array]:
    """Similarity-align ``predicted`` (..., J, 3) to ``target`` (..., J, 3) (Umeyama / Kabsch with scale).

    Finds ``s, R, t`` minimising ``|| s R p + t - x ||^2`` per leading index, with ``det R = +1`` (no
    reflections). Returns the aligned prediction, or ``(aligned, s (...,), R (...,3,3), t (...,3))``.
    """
    xp = _xp(predicted)
    if predicted.shape != target.shape or predicted.shape[-1] != 3:
        raise ValueError(f"procrustes: shapes must match and end in 3, got {tuple(predicted.shape)} "
                         f"and {tuple(target.shape)}")
    mu_p = predicted.mean(-2, keepdims=True) if xp is np else predicted.mean(-2, keepdim=True)
    mu_t = target.mean(-2, keepdims=True) if xp is np else target.mean(-2, keepdim=True)
    p0, t0 = predicted - mu_p, target - mu_t
    cov = xp.einsum("...ji,...jk->...ik", t0, p0)  # (..., 3, 3)  sum_j t_j p_j^T
    u, sig, vt = xp.linalg.svd(cov)
    d = xp.sign(xp.linalg.det(u @ vt))  # reflection fix
    if xp is np:
        d = np.where(d == 0, 1.0, d)
        ones = np.ones_like(d)
        fix = np.stack([ones, ones, d], -1)
    else:
        d = xp.where(d == 0, xp.ones_like(d), d)
        ones = xp.ones_like(d)
        fix = xp.stack([ones, ones, d], -1)
    rot = u @ (fix[..., :, None] * vt)  # R = U diag(1,1,d) V^T maps p -> t
    var_p = (p0**2).sum((-1, -2))
    if scale:
        s = (sig * fix).sum(-1) / xp.where(var_p > 0, var_p, xp.ones_like(var_p))
    else:
        s = xp.ones_like(var_p)
    trans = mu_t[..., 0, :] - s[..., None] * xp.einsum("...ij,...j->...i", rot, mu_p[..., 0, :])
    aligned = s[..., None, None] * xp.einsum("...ij,...nj->...ni", rot, predicted) + trans[..., None, :]
    if return_transform:
        return aligned, s, rot, trans
    return aligned


# ---------------------------------------------------------------------------------------------------------
# Metric root recovery
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootSolution:
    """Camera-frame root translation from root-relative 3D joints and 2D keypoints.

    ``translation`` (..., 3) metres (NaN where ``valid`` is False); ``valid`` (...,) bool;
    ``reprojection_error_px`` (...,) weighted RMS reprojection error of the solved skeleton (NaN if invalid);
    ``num_joints`` (...,) joints with weight > 0.
    """

    translation: Array
    valid: Array
    reprojection_error_px: Array
    num_joints: Array


def solve_root_translation(
    joints_rel_m: Array,
    keypoints_px: Array,
    weights: Array,
    intrinsics: Intrinsics | Array,
    refine_iterations: int = 5,
    min_joints: int = 2,
    min_depth_m: float = 0.1,
    max_condition: float = 1e8,
) -> RootSolution:
    """Solve the camera-frame root ``T = (tx, ty, tz)`` such that ``joints_rel + T`` reprojects onto the 2D.

    1. Linear least squares (the standard linearisation, e.g. VNect / MotioNet root solvers): with
       normalised image coordinates ``a = (u - cx) / fx``, ``b = (v - cy) / fy`` and root-relative joint
       ``(x, y, z)``, the projection constraint ``a = (x + tx) / (z + tz)`` becomes linear in T::

           tx - a * tz = a * z - x
           ty - b * tz = b * z - y

       Each joint contributes two rows weighted by ``w_j`` (0 = missing); the 3x3 weighted normal
       equations are solved per sample. Exact for noiseless, consistent inputs.
    2. If that puts any weighted joint at or behind the camera (a pose inconsistent with the 2D can do
       this), start instead from the scale estimate ``tz = (3D spread) / (2D spread in normalised
       coordinates)`` with the 2D centroid's ray for (tx, ty), which is always in front.
    3. ``refine_iterations`` Gauss-Newton steps on the true (normalised) reprojection error
       ``sum_j w_j |((x_j + tx) / (z_j + tz), (y_j + ty) / (z_j + tz)) - (a_j, b_j)|^2``, keeping every
       weighted joint in front of the camera. The linear residual is the reprojection error times the
       joint depth, so this matters under noise and when the person spans a large depth range.

    Shapes: joints_rel_m (..., J, 3), keypoints_px (..., J, 2), weights (..., J), intrinsics ``Intrinsics``
    or (..., 4). Underdetermined samples (fewer than ``min_joints`` weighted joints, an ill-conditioned
    system, or a root depth below ``min_depth_m``) get ``valid = False`` and a NaN translation.
    """
    xp = _xp(joints_rel_m)
    if joints_rel_m.shape[-1] != 3 or keypoints_px.shape[-1] != 2:
        raise ValueError(f"expected joints (..., J, 3) and keypoints (..., J, 2), got {tuple(joints_rel_m.shape)}"
                         f" and {tuple(keypoints_px.shape)}")
    if joints_rel_m.shape[:-1] != keypoints_px.shape[:-1] or weights.shape != joints_rel_m.shape[:-1]:
        raise ValueError(f"joints {tuple(joints_rel_m.shape)}, keypoints {tuple(keypoints_px.shape)} and "
                         f"weights {tuple(weights.shape)} disagree on (..., J)")
    fx, fy, cx, cy = _intr(intrinsics, keypoints_px[..., 0])
    a = (keypoints_px[..., 0] - cx) / fx  # (..., J)
    b = (keypoints_px[..., 1] - cy) / fy
    x, y, z = joints_rel_m[..., 0], joints_rel_m[..., 1], joints_rel_m[..., 2]
    finite = xp.isfinite(a) & xp.isfinite(b) & xp.isfinite(x) & xp.isfinite(y) & xp.isfinite(z)
    w = xp.where(finite & (weights > 0), weights, xp.zeros_like(weights))
    zero = xp.zeros_like(a)
    a, b, x, y, z = (xp.where(finite, q, zero) for q in (a, b, x, y, z))
    n_joints = (w > 0).sum(-1)
    used = w > 0
    eye = xp.eye(3, dtype=a.dtype) if xp is np else xp.eye(3, dtype=a.dtype, device=a.device)

    def solve3(m: Array, rhs: Array) -> tuple[Array, Array]:
        ev = xp.linalg.eigvalsh(m)  # symmetric PSD: conditioning from its eigenvalues, no warnings
        ok = xp.all(xp.isfinite(ev), -1) & (ev[..., -1] > 0) & (ev[..., 0] * max_condition > ev[..., -1])
        m_safe = xp.where(ok[..., None, None], m, eye + 0 * m)
        rhs_safe = xp.where(ok[..., None], rhs, xp.zeros_like(rhs))
        return xp.linalg.solve(m_safe, rhs_safe[..., None])[..., 0], ok

    # 1. Linear solve: normal equations A^T W A T = A^T W r with rows [1, 0, -a], [0, 1, -b].
    sw, sa, sb = w.sum(-1), (w * a).sum(-1), (w * b).sum(-1)
    saa = (w * (a * a + b * b)).sum(-1)
    rx, ry = a * z - x, b * z - y
    zs = xp.zeros_like(sw)
    m = xp.stack([xp.stack([sw, zs, -sa], -1), xp.stack([zs, sw, -sb], -1), xp.stack([-sa, -sb, saa], -1)], -2)
    rhs = xp.stack([(w * rx).sum(-1), (w * ry).sum(-1), -(w * (a * rx + b * ry)).sum(-1)], -1)
    t, ok = solve3(m, rhs)

    # Smallest root-relative depth over the weighted joints: joint depths are z_j + tz >= z_min + tz.
    z_used = xp.where(used, z, xp.full_like(z, float("inf")))
    z_min = z_used.min(-1) if xp is np else z_used.min(-1).values
    tz_floor = min_depth_m * 0.5 - z_min  # keeps every weighted joint at least min_depth/2 in front

    # 2. Scale-based start where the linear solution is behind the camera.
    wsum = xp.where(sw > 0, sw, xp.ones_like(sw))
    ma, mb, mx, my, mz = ((w * q).sum(-1) / wsum for q in (a, b, x, y, z))
    spread2d = xp.sqrt((w * ((a - ma[..., None]) ** 2 + (b - mb[..., None]) ** 2)).sum(-1) / wsum)
    spread3d = xp.sqrt((w * ((x - mx[..., None]) ** 2 + (y - my[..., None]) ** 2)).sum(-1) / wsum)
    scalable = (spread2d > 0) & (spread3d > 0)
    tz_s = spread3d / xp.where(scalable, spread2d, xp.ones_like(spread2d)) - mz
    tz_s = xp.where(scalable, xp.maximum(tz_s, tz_floor), xp.ones_like(tz_s))
    t_scale = xp.stack([ma * (mz + tz_s) - mx, mb * (mz + tz_s) - my, tz_s], -1)
    behind = ~ok | ~(t[..., 2] >= tz_floor)
    t = xp.where(behind[..., None], t_scale, t)
    # A pose with no spread (e.g. a point-sized prediction) fits the 2D at any depth: not solvable.
    ok = (ok & ~behind) | (behind & scalable)

    # 3. Gauss-Newton on the normalised reprojection error, joints kept in front of the camera.
    for _ in range(max(0, refine_iterations)):
        d = z + t[..., 2:3]
        d = xp.where(used & (d > 1e-6), d, xp.ones_like(d))
        inv = 1.0 / d
        px_, py_ = (x + t[..., 0:1]) * inv, (y + t[..., 1:2]) * inv
        ra, rb = px_ - a, py_ - b
        ja, jb = -px_ * inv, -py_ * inv  # d(ra)/d(tz), d(rb)/d(tz); d(ra)/d(tx) = d(rb)/d(ty) = inv
        wi2 = w * inv * inv
        h = xp.stack([
            xp.stack([wi2.sum(-1), zs, (w * inv * ja).sum(-1)], -1),
            xp.stack([zs, wi2.sum(-1), (w * inv * jb).sum(-1)], -1),
            xp.stack([(w * inv * ja).sum(-1), (w * inv * jb).sum(-1), (w * (ja * ja + jb * jb)).sum(-1)], -1),
        ], -2)
        g = xp.stack([(w * inv * ra).sum(-1), (w * inv * rb).sum(-1), (w * (ja * ra + jb * rb)).sum(-1)], -1)
        step, step_ok = solve3(h, -g)
        t_new = t + xp.where(step_ok[..., None], step, xp.zeros_like(step))
        tz_new = xp.maximum(t_new[..., 2], tz_floor)
        t = xp.where(ok[..., None], xp.stack([t_new[..., 0], t_new[..., 1], tz_new], -1), t)

    valid = ok & (n_joints >= min_joints) & (t[..., 2] > min_depth_m) & xp.all(xp.isfinite(t), -1)
    # Reprojection error of the solved skeleton (pixels, weighted RMS).
    pz = z + t[..., 2:3]
    pz_safe = xp.where(pz > 1e-6, pz, xp.ones_like(pz))
    du = ((x + t[..., 0:1]) / pz_safe - a) * fx
    dv = ((y + t[..., 1:2]) / pz_safe - b) * fy
    err = xp.sqrt((w * (du * du + dv * dv)).sum(-1) / wsum)
    nan = float("nan")
    t = xp.where(valid[..., None], t, xp.full_like(t, nan))
    err = xp.where(valid, err, xp.full_like(err, nan))
    return RootSolution(translation=t, valid=valid, reprojection_error_px=err, num_joints=n_joints)


def axis_angle_matrix(axis: Any, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit vector ``axis`` (Rodrigues' formula)."""
    x, y, z = (float(v) for v in axis)
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return np.array([
        [c + t * x * x, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, c + t * y * y, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, c + t * z * z],
    ])  # fmt: skip

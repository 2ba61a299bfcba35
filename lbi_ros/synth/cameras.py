"""Virtual cameras for synthetic training data: robot-mounted and handheld viewpoints.

World frame: metres, right-handed, Z up, floor z = 0 (see ``lbi_ros.mocap.clips``). Camera frame: OpenCV /
ROS optical (x right, y down, z forward). A sampled camera looks roughly at the person, from:

=================  ===========================  ===================================================
quantity           default range                why
=================  ===========================  ===================================================
distance           1.0 - 9 m (log-uniform)      robot social range to across-the-room; horizontal,
                                                camera to the person's pelvis
height             0.25 - 2.6 m                 floor robots and low mounts, tablets/handheld
                                                (1.0-1.8), high wall/ceiling-ish mounts
yaw around person  0 - 360 deg                  any facing direction
pitch              derived (look-at) + N(0, 5)  cameras aim at the person, imperfectly
roll               N(0, 3) deg, p=0.3 N(0, 12)  robots are level; handheld cameras tilt
horizontal FOV     45 - 110 deg                 narrow webcams to wide robot cameras
principal point    centre + U(-3 %, 3 %)        calibration offsets
image size         640x480, 848x480, 1280x720,  common robot/RGB-D camera modes
                   1920x1080, 960x540, 1024x768
framing            person centre anywhere in    crops near image borders (truncated people
                   the central 70 % of the      happen; the crop keeps its outside part black)
                   image
=================  ===========================  ===================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lbi_ros.geometry import Intrinsics, axis_angle_matrix


@dataclass(frozen=True)
class CameraSamplerConfig:
    distance_m: tuple[float, float] = (1.0, 9.0)
    height_m: tuple[float, float] = (0.25, 2.6)
    hfov_deg: tuple[float, float] = (45.0, 110.0)
    pitch_jitter_deg: float = 5.0
    roll_std_deg: float = 3.0
    roll_tilted_std_deg: float = 12.0
    roll_tilted_prob: float = 0.3
    principal_point_jitter: float = 0.03
    image_sizes: tuple[tuple[int, int], ...] = (
        (640, 480), (848, 480), (1280, 720), (1920, 1080), (960, 540), (1024, 768),
    )  # fmt: skip  (width, height)
    framing: float = 0.7  # person centre lands uniformly in this central fraction of the image

    def __post_init__(self) -> None:
        for name in ("distance_m", "height_m", "hfov_deg"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"CameraSamplerConfig.{name}: need 0 <= low <= high, got {(lo, hi)}")
        if self.distance_m[0] <= 0 or self.hfov_deg[1] >= 180:
            raise ValueError("distance must be > 0 and hfov < 180 deg")
        if not self.image_sizes:
            raise ValueError("image_sizes must not be empty")
        if not 0 < self.framing <= 1:
            raise ValueError(f"framing must be in (0, 1], got {self.framing}")


@dataclass(frozen=True)
class VirtualCamera:
    """``x_cam = rotation @ x_world + translation``; ``width``/``height`` of the full image in pixels."""

    intrinsics: Intrinsics
    rotation: np.ndarray  # (3, 3) world -> camera
    translation: np.ndarray  # (3,)
    width: int
    height: int

    def world_to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world -> (..., 3) camera frame."""
        return points_world @ self.rotation.T + self.translation

    @property
    def position(self) -> np.ndarray:
        """Camera centre in the world."""
        return -self.rotation.T @ self.translation


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # np.cross costs ~20 us per call on 3-vectors; this is ~1 us
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def look_at_rotation(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """World->camera rotation of an optical-frame camera at ``eye`` looking at ``target`` (no roll).

    ``up`` defaults to the world Z axis.
    """
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z = z / math.sqrt(z @ z)
    x = _cross(z, up)
    if x @ x < 1e-12:  # looking straight up/down: pick any horizontal x
        x = _cross(z, np.array([1.0, 0.0, 0.0]))
    x = x / math.sqrt(x @ x)
    y = _cross(z, x)
    return np.stack([x, y, z], 0)  # rows: camera axes in world coordinates


def sample_camera(
    rng: np.random.Generator, target_world: np.ndarray, config: CameraSamplerConfig = CameraSamplerConfig()
) -> VirtualCamera:
    """Sample a camera that sees ``target_world`` (the person's pelvis) somewhere inside the image."""
    u = rng.random(10).tolist()
    n_pitch, n_roll = rng.standard_normal(2).tolist()
    width, height = config.image_sizes[int(u[0] * len(config.image_sizes))]
    lo, hi = config.hfov_deg
    hfov = math.radians(lo + (hi - lo) * u[1])
    f = 0.5 * width / math.tan(hfov / 2)
    jit = config.principal_point_jitter
    cx = (width - 1) / 2 + (2 * u[2] - 1) * jit * width
    cy = (height - 1) / 2 + (2 * u[3] - 1) * jit * height
    intr = Intrinsics(fx=f, fy=f, cx=cx, cy=cy)

    lo, hi = config.distance_m
    dist = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[4])  # log-uniform
    lo, hi = config.height_m
    cam_h = lo + (hi - lo) * u[5]
    yaw = 2 * math.pi * u[6]
    target = np.asarray(target_world, dtype=np.float64)
    eye = np.array([target[0] + dist * math.cos(yaw), target[1] + dist * math.sin(yaw), cam_h])
    rot = look_at_rotation(eye, target)  # optical axis through the target

    # Re-aim so the target lands at a random image position: rotate the camera so that the target
    # direction (currently +z) maps to the ray through that pixel; then pitch jitter and roll.
    rx = (u[7] - 0.5) * config.framing * width / f
    ry = (u[8] - 0.5) * config.framing * height / f
    norm = math.sqrt(rx * rx + ry * ry + 1.0)
    s = math.sqrt(rx * rx + ry * ry) / norm  # |z x ray|
    if s > 1e-9:
        axis = (-ry / norm / s, rx / norm / s, 0.0)  # (0, 0, 1) x ray, normalised
        rot = axis_angle_matrix(axis, math.asin(min(1.0, s))) @ rot
    rot = axis_angle_matrix((1.0, 0.0, 0.0), math.radians(n_pitch * config.pitch_jitter_deg)) @ rot
    roll_std = config.roll_tilted_std_deg if u[9] < config.roll_tilted_prob else config.roll_std_deg
    rot = axis_angle_matrix((0.0, 0.0, 1.0), math.radians(n_roll * roll_std)) @ rot
    trans = -rot @ eye
    return VirtualCamera(intrinsics=intr, rotation=rot, translation=trans, width=width, height=height)

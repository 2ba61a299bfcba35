"""The demo scene: the shipped motion takes seen by a robot-height camera, rendered, with detector noise.

Deterministic for a seed: the player (which publishes the frames) and the recorder (which scores the
node's output) both rebuild the same ground truth from :func:`build_scene`, so nothing but the stamps
has to travel between them.

Camera: 640x480, f = 525 px (a typical RGB-D sensor), 1.2 m above the floor, looking at the people
from about 4 to 5.5 m. Person "walker" crosses the view in front of person "guide", so the demo contains
an occlusion. The detector-noise model is the training one (:mod:`lbi_ros.data.noise2d`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lbi_ros.data.cameras import look_at_rotation
from lbi_ros.data.noise2d import Noise2DConfig, apply_detector_noise
from lbi_ros.data.render import PersonRenderer, RenderConfig, render_people
from lbi_ros.demo.clip import DemoTake, load_demo_clip
from lbi_ros.geometry import Intrinsics, project

IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
INTRINSICS = Intrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5)
CAMERA_POSITION_M = np.array([0.0, -3.6, 1.2])
CAMERA_TARGET_M = np.array([0.0, 0.8, 0.9])
# World placement of each take's root trajectory (x, y offsets on the floor), after centring it.
PLACEMENT_M = (np.array([0.0, 0.3]), np.array([0.9, 1.8]))
PERSON_IDS = ("walker", "guide")


@dataclass(frozen=True)
class SceneFrame:
    index: int
    image_rgb: np.ndarray  # (H, W, 3) uint8
    person_ids: tuple[str, ...]
    joints_cam_m: np.ndarray  # (P, 17, 3) ground truth, camera optical frame
    keypoints_px: np.ndarray  # (P, 17, 3) noisy detector output [u, v, conf]


def camera_extrinsics() -> tuple[np.ndarray, np.ndarray]:
    """(R, t) with x_cam = R x_world + t; optical frame (x right, y down, z forward)."""
    rotation = look_at_rotation(CAMERA_POSITION_M, CAMERA_TARGET_M, np.array([0.0, 0.0, 1.0]))
    return rotation, -rotation @ CAMERA_POSITION_M


def place_take(take: DemoTake, offset_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre the take's root path on the floor origin, then move it to ``offset_xy``."""
    shift = np.zeros(3)
    shift[:2] = offset_xy - take.joints_world_m[:, 0, :2].mean(axis=0)
    return take.joints_world_m + shift, take.toes_world_m + shift


def build_scene(num_frames: int | None = None, seed: int = 0, render: bool = True) -> list[SceneFrame]:
    """All frames of the demo (rendering 640x480 frames takes a few ms each; ``render=False`` skips it)."""
    takes = load_demo_clip()
    rotation, translation = camera_extrinsics()
    placed = [place_take(t, o) for t, o in zip(takes, PLACEMENT_M, strict=True)]
    count = min(len(t.joints_world_m) for t in takes)
    count = count if num_frames is None else min(count, num_frames)
    renderer = PersonRenderer(RenderConfig(occluder_prob=0.0, blur_prob=0.0)) if render else None
    noise = Noise2DConfig()
    frames = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        joints = np.stack([j[i] @ rotation.T + translation for j, _ in placed])  # (P, 17, 3)
        toes = np.stack([t[i] @ rotation.T + translation for _, t in placed])  # (P, 2, 3)
        pixels = project(joints, INTRINSICS)  # (P, 17, 2)
        keypoints = np.stack([apply_detector_noise(p, rng, noise, (IMAGE_WIDTH, IMAGE_HEIGHT)) for p in pixels])
        image = (render_people(renderer, joints, toes, INTRINSICS, IMAGE_WIDTH, IMAGE_HEIGHT,
                               np.random.default_rng([seed, i, 1]), scene_seed=seed)
                 if renderer is not None else np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.uint8))
        frames.append(SceneFrame(i, image, PERSON_IDS, joints, keypoints))
    return frames

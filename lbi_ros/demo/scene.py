"""The demo scene: the shipped motion takes seen by a robot-height camera, rendered, with detector noise.

Deterministic for a seed: the player (which publishes the frames) and the recorder (which scores the
node's output) both rebuild the same ground truth from :class:`DemoScene`, so nothing but the stamps
has to travel between them.

Camera: 640x480, f = 525 px (a typical RGB-D sensor), 1.2 m above the floor, looking at the people
from about 4 to 5.5 m. Person "walker" crosses the view in front of person "guide", so the demo
contains an occlusion. Longer runs play the takes back and forth (ping-pong), more people reuse the
takes at other places and phases. The detector-noise model is the training one
(:mod:`lbi_ros.synth.noise2d`), drawn anew for every frame.

``body="mesh"`` shows skinned, clothed people (:mod:`lbi_ros.render.mesh.mesh_people`, vendored assets, headless
GL) instead of capsules, z-buffered together so they occlude each other; the ground truth is then the
posed bodies' joints, exactly as in mesh training samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lbi_ros.demo.clip import DemoTake, load_demo_clip
from lbi_ros.geometry import Intrinsics, project
from lbi_ros.render.capsule.body_model import RenderConfig
from lbi_ros.render.capsule.renderer import PersonRenderer, add_sensor_noise, render_people, scene_background
from lbi_ros.synth.cameras import look_at_rotation
from lbi_ros.synth.noise2d import Noise2DConfig, apply_detector_noise

IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
INTRINSICS = Intrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5)
CAMERA_POSITION_M = np.array([0.0, -3.6, 1.2])
CAMERA_TARGET_M = np.array([0.0, 0.8, 0.9])
# Per person: (take index, floor position (x, y) of the centred root path, phase offset in frames, id).
PEOPLE: tuple[tuple[int, tuple[float, float], int, str], ...] = (
    (0, (0.0, 0.3), 0, "walker"),
    (1, (0.9, 1.8), 0, "guide"),
    (1, (-1.2, 2.2), 60, "guide_2"),
    (0, (0.3, 2.6), 60, "walker_2"),
)
MAX_PEOPLE = len(PEOPLE)


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
    shift[:2] = np.asarray(offset_xy) - take.joints_world_m[:, 0, :2].mean(axis=0)
    return take.joints_world_m + shift, take.toes_world_m + shift


def ping_pong(index: int, length: int) -> int:
    """0, 1, ..., length-1, length-2, ..., 1, 0, 1, ...: endless playback without a jump."""
    period = max(1, 2 * length - 2)
    k = index % period
    return k if k < length else period - k


class DemoScene:
    """Frames on demand; images are cached per pose (ping-pong repeats them), noise is per frame."""

    def __init__(self, num_people: int = 2, seed: int = 0, render: bool = True, body: str = "capsule") -> None:
        if not 1 <= num_people <= MAX_PEOPLE:
            raise ValueError(f"the demo scene has 1..{MAX_PEOPLE} people, got {num_people}")
        if body not in ("capsule", "mesh"):
            raise ValueError(f"body must be 'capsule' or 'mesh', got {body!r}")
        takes = load_demo_clip()
        self.seed = seed
        self.people = PEOPLE[:num_people]
        self.person_ids = tuple(p[3] for p in self.people)
        self.rotation, self.translation = camera_extrinsics()
        self.placed = [place_take(takes[t], np.array(xy)) for t, xy, _, _ in self.people]
        self.length = min(len(j) for j, _ in self.placed)
        self.renderer = PersonRenderer(RenderConfig(occluder_prob=0.0, blur_prob=0.0)) if render else None
        self.noise = Noise2DConfig()
        self._images: dict[int, np.ndarray] = {}
        self.mesh = None
        self._posed: dict[int, list] = {}  # pose index -> posed mesh people (PosedPerson)
        if body == "mesh":
            from lbi_ros.render.mesh.mesh_people import MeshBodyConfig, MeshPeople

            self.mesh = MeshPeople(MeshBodyConfig(fraction=1.0, identities_cached=MAX_PEOPLE))

    def pose_index(self, index: int) -> int:
        return ping_pong(index, self.length)

    def frame(self, index: int) -> SceneFrame:
        pose = self.pose_index(index)
        world = self._world_poses(pose)
        joints_cam = self.world_to_camera(np.stack([j for j, _ in world]))  # (P, 17, 3)
        toes_cam = self.world_to_camera(np.stack([t for _, t in world]))  # (P, 2, 3)
        rng = np.random.default_rng([self.seed, index])
        pixels = project(joints_cam, INTRINSICS)  # (P, 17, 2)
        keypoints = np.stack([apply_detector_noise(p, rng, self.noise, (IMAGE_WIDTH, IMAGE_HEIGHT)) for p in pixels])
        return SceneFrame(index, self._image(pose, joints_cam, toes_cam), self.person_ids, joints_cam, keypoints)

    def _world_poses(self, pose: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per person (joints (17, 3), toes (2, 3)) in the world at ``pose``: the take's frame, or for mesh
        people the joints of the body posed by it."""
        frames = []
        for (joints_w, toes_w), (_, _, phase, _) in zip(self.placed, self.people, strict=True):
            f = ping_pong(pose + phase, self.length)
            frames.append((joints_w[f], toes_w[f]))
        if self.mesh is None:
            return frames
        if pose not in self._posed:
            self._posed[pose] = [self.mesh.pose(self.mesh.identity((self.seed, k, 9_000)), j, t)
                                 for k, (j, t) in enumerate(frames)]
        return [(p.joints, p.toes) for p in self._posed[pose]]

    def _image(self, pose: int, joints_cam: np.ndarray, toes_cam: np.ndarray) -> np.ndarray:
        if self.renderer is None:
            return np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.uint8)
        if self.mesh is not None and pose not in self._images:
            from lbi_ros.render.mesh.mesh_raster import composite

            layer = self.mesh.draw(self._posed[pose], self, INTRINSICS, IMAGE_HEIGHT, IMAGE_WIDTH,
                                   np.random.default_rng([self.seed, 77]))  # the same light in every frame
            image = composite(layer, scene_background(self.renderer, self.seed, IMAGE_HEIGHT, IMAGE_WIDTH))
            self._images[pose] = add_sensor_noise(self.renderer, image, np.random.default_rng([self.seed, pose, 1]))
        if pose not in self._images:
            self._images[pose] = render_people(self.renderer, joints_cam, toes_cam, INTRINSICS, IMAGE_WIDTH,
                                               IMAGE_HEIGHT, np.random.default_rng([self.seed, pose, 1]),
                                               scene_seed=self.seed)
        return self._images[pose]

    def world_to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world -> (..., 3) camera optical frame (the scene's fixed camera)."""
        return points_world @ self.rotation.T + self.translation

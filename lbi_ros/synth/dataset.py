"""Synthetic training data: mocap (or procedural) pose + virtual camera + 2D detector noise + rendered crop.

Each sample goes through :mod:`lbi_ros.preprocess` exactly like a deployment crop (box rule from the *noisy*
keypoints, same normalisation); the image is rendered straight into the crop. A sample is a deterministic
function of ``(seed, epoch, index)``, so results do not depend on the number of DataLoader workers and a
resumed run sees the same data.

Sample (numpy float32; ``torch.utils.data.default_collate`` turns them into tensors):

* model inputs: ``image_crop`` (3, H, W), ``keypoints_crop`` (17, 3), ``keypoints_cam`` (17, 2),
  ``crop_cam`` (4,) (see :mod:`lbi_ros.preprocess`);
* targets: ``joints_3d`` (17, 3) root-relative camera-frame metres (pelvis = 0), ``root_cam`` (3,) the
  camera-frame pelvis in metres;
* extras for evaluation/debugging: ``keypoints_px`` (17, 3) noisy ``[u, v, conf]``, ``keypoints_gt_px``
  (17, 2), ``intrinsics`` (4,) ``[fx, fy, cx, cy]``, ``box`` (4,) ``[cx, cy, w, h]``, ``image_size`` (2,)
  ``[width, height]``.

Augmentations: bone-length retargeting (the mocap rig has narrow hips/shoulders compared with Human3.6M
and MPI-INF-3DHP; see ``BoneAugmentConfig``), mirror (the 3D pose is mirrored before rendering, which is
exact, unlike flipping a rendered image), crop-box scale/shift jitter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.geometry import project
from lbi_ros.mocap.poses import MocapPoseSource, PoseSource, ProceduralPoseSource
from lbi_ros.preprocess import CropConfig, compute_crop_box, encode_person, visible_mask
from lbi_ros.render.capsule.body_model import RenderConfig
from lbi_ros.render.capsule.renderer import PersonRenderer, crop_valid_region
from lbi_ros.render.mesh.mesh_people import MeshBodyConfig, MeshPeople
from lbi_ros.skeleton import H36M17
from lbi_ros.synth.cameras import CameraSamplerConfig, sample_camera
from lbi_ros.synth.noise2d import Noise2DConfig, apply_detector_noise
from lbi_ros.synth.sample import make_sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoneAugmentConfig:
    """Per-sample bone lengths: hip and shoulder *widths* are drawn in metres (the Bandai-Namco rig has
    13 cm between its hip joints and 21 cm between its shoulder joints, Human3.6M about 26 cm and 30 cm);
    the other groups are scale factors (uniform ranges), applied symmetrically to left and right."""

    enabled: bool = True
    overall: tuple[float, float] = (0.9, 1.12)
    hip_width_m: tuple[float, float] = (0.17, 0.3)
    shoulder_width_m: tuple[float, float] = (0.25, 0.38)
    legs: tuple[float, float] = (0.94, 1.1)
    arms: tuple[float, float] = (0.94, 1.12)
    torso: tuple[float, float] = (0.92, 1.12)
    head: tuple[float, float] = (0.85, 1.1)


@dataclass(frozen=True)
class SyntheticDataConfig:
    cache_dir: str = ""  # mocap cache from `lbi data prepare-mocap`; empty = procedural poses only
    split: Literal["train", "val", "test"] = "train"
    sampling: Literal["content", "frames"] = "content"  # balance motion types, or uniform over frames
    procedural_fraction: float = 0.15  # share of samples with procedural poses when a cache is used
    samples_per_epoch: int = 100_000
    seed: int = 0
    flip_prob: float = 0.5
    box_jitter_scale: float = 0.1  # crop-box augmentation (training only: evaluation sets force both to 0)
    box_jitter_shift: float = 0.05
    min_visible_joints: int = 8
    max_tries: int = 30
    crop: CropConfig = field(default_factory=CropConfig)
    camera: CameraSamplerConfig = field(default_factory=CameraSamplerConfig)
    noise: Noise2DConfig = field(default_factory=Noise2DConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    bones: BoneAugmentConfig = field(default_factory=BoneAugmentConfig)
    mesh: MeshBodyConfig = field(default_factory=MeshBodyConfig)

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be train/val/test, got {self.split!r}")
        if not 0 <= self.procedural_fraction <= 1:
            raise ValueError(f"procedural_fraction must be in [0, 1], got {self.procedural_fraction}")
        if self.samples_per_epoch < 1:
            raise ValueError("samples_per_epoch must be >= 1")


# Bone group of each child joint (the bone from its H36M parent); index 0 (pelvis) is the root.
_BONE_GROUPS = (
    "overall", "hip_width", "legs", "legs", "hip_width", "legs", "legs", "torso", "torso", "head", "head",
    "shoulder_width", "arms", "arms", "shoulder_width", "arms", "arms",
)  # fmt: skip
_PARENTS = np.array([max(p, 0) for p in H36M17.parents])
# _ANCESTORS[j, a] = 1 if a is j or one of its ancestors: joints = _ANCESTORS @ bone_vectors.
_ANCESTORS = np.zeros((17, 17))
for _j in range(17):
    _a = _j
    while _a >= 0:
        _ANCESTORS[_j, _a] = 1.0
        _a = H36M17.parents[_a]


def retarget_bones(
    joints: np.ndarray, toes: np.ndarray, rng: np.random.Generator, config: BoneAugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Scale bone lengths by group (keeping every bone's direction), keep the pelvis and the floor contact."""
    joints = np.asarray(joints, dtype=np.float64)
    toes = np.asarray(toes, dtype=np.float64)
    u = rng.random(7).tolist()

    def draw(rng_range: tuple[float, float], x: float) -> float:
        return rng_range[0] + (rng_range[1] - rng_range[0]) * x

    overall = draw(config.overall, u[0])
    hip_now = float(np.linalg.norm(joints[4] - joints[1]))
    sh_now = float(np.linalg.norm(joints[11] - joints[14]))
    scale = {
        "overall": 1.0,  # the root "bone" is the pelvis position itself
        "hip_width": draw(config.hip_width_m, u[1]) / max(hip_now, 1e-3),  # absolute width, overall applied
        "shoulder_width": draw(config.shoulder_width_m, u[2]) / max(sh_now, 1e-3),
        "legs": overall * draw(config.legs, u[3]),
        "arms": overall * draw(config.arms, u[4]),
        "torso": overall * draw(config.torso, u[5]),
        "head": overall * draw(config.head, u[6]),
    }
    k = np.array([scale[g] for g in _BONE_GROUPS])
    bones = joints - joints[_PARENTS]  # (17, 3); row 0 = 0
    bones[0] = joints[0]
    new = _ANCESTORS @ (bones * k[:, None])
    new_toes = new[[6, 3]] + (toes - joints[[6, 3]]) * overall
    dz = min(joints[[3, 6], 2].min(), toes[:, 2].min()) - min(new[[3, 6], 2].min(), new_toes[:, 2].min())
    new[:, 2] += dz
    new_toes[:, 2] += dz
    return new, new_toes


def mirror_pose(joints: np.ndarray, toes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror across the world x-z plane (y -> -y) and swap left/right labels: another valid person."""
    j = joints[list(H36M17.flip_index)].copy()
    j[:, 1] *= -1
    t = toes[::-1].copy()
    t[:, 1] *= -1
    return j, t


class SyntheticPoseDataset:
    """Map-style dataset of rendered training samples (a ``torch.utils.data.Dataset`` by duck typing:
    ``__len__`` and ``__getitem__``; torch is not needed to use it).

    Heavy state (renderer banks, mocap arrays) is created lazily in each worker process.
    """

    def __init__(self, config: SyntheticDataConfig = SyntheticDataConfig()) -> None:
        self.config = config
        self.epoch = 0
        self._renderer: PersonRenderer | None = None
        self._mesh: MeshPeople | None = None
        self._mocap: PoseSource | None = None
        self._procedural = ProceduralPoseSource()
        if config.cache_dir and not Path(config.cache_dir).is_dir():
            raise FileNotFoundError(f"mocap cache {config.cache_dir} does not exist; run `lbi data prepare-mocap`")

    def __len__(self) -> int:
        return self.config.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Different data per epoch (same for all workers)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_renderer"] = None  # rebuilt in the worker
        state["_mesh"] = None  # GL contexts and body models are per process
        state["_mocap"] = None
        return state

    @property
    def renderer(self) -> PersonRenderer:
        if self._renderer is None:
            self._renderer = PersonRenderer(self.config.render)
        return self._renderer

    @property
    def mesh_people(self) -> MeshPeople:
        if self._mesh is None:
            self._mesh = MeshPeople(self.config.mesh)
        return self._mesh

    @property
    def mocap(self) -> PoseSource | None:
        if self._mocap is None and self.config.cache_dir:
            from lbi_ros.mocap.cache import load_mocap_cache

            cache = load_mocap_cache(self.config.cache_dir)
            self._mocap = MocapPoseSource(cache, self.config.split, self.config.sampling)
        return self._mocap

    def sample_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        mocap = self.mocap
        if mocap is None or rng.random() < self.config.procedural_fraction:
            return self._procedural.sample(rng)
        return mocap.sample(rng)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.config.seed, self.epoch, int(index)])
        return self.generate(rng, self.identity_key(self.epoch, int(index)))

    def identity_key(self, epoch: int, index: int) -> tuple[int, int, int]:
        """The mesh person of sample ``index``: consecutive indices share one (``mesh.identity_block``)."""
        return (self.config.seed, epoch, index // self.config.mesh.identity_block)

    def generate(self, rng: np.random.Generator, identity: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
        """One sample from ``rng`` (retries camera/pose draws that leave too few joints visible).

        ``identity``: key of the mesh person to draw when this sample gets one (see
        :class:`lbi_ros.render.mesh.mesh_people.MeshPeople`); None draws a key from ``rng``.
        """
        cfg = self.config
        crop = cfg.crop
        # Capsule-only configs draw nothing extra, so their samples stay what they were.
        use_mesh = cfg.mesh.fraction > 0 and rng.random() < cfg.mesh.fraction
        people: list = []
        if use_mesh and identity is None:
            identity = (cfg.seed, 1_000_000 + int(rng.integers(1 << 30)))
        for _ in range(cfg.max_tries):
            joints_w, toes_w = self.sample_pose(rng)
            if use_mesh:  # the body's own shape sets the bone lengths; labels come from the posed body
                if rng.random() < cfg.flip_prob:
                    joints_w, toes_w = mirror_pose(joints_w, toes_w)
                people = self._mesh_people_for(identity, joints_w, toes_w, rng)
                joints_w, toes_w = people[0].joints, people[0].toes
            else:
                if cfg.bones.enabled:
                    joints_w, toes_w = retarget_bones(joints_w, toes_w, rng, cfg.bones)
                if rng.random() < cfg.flip_prob:
                    joints_w, toes_w = mirror_pose(joints_w, toes_w)
            cam = sample_camera(rng, joints_w[0], cfg.camera)
            joints_c = cam.world_to_camera(joints_w)
            toes_c = cam.world_to_camera(toes_w)
            if min(joints_c[:, 2].min(), toes_c[:, 2].min()) < 0.3:
                continue  # a body part at/behind the camera
            gt_px = project(joints_c, cam.intrinsics)
            kp = apply_detector_noise(gt_px, rng, cfg.noise, image_size=(cam.width, cam.height))
            if int(visible_mask(kp, crop.min_confidence).sum()) < cfg.min_visible_joints:
                continue
            kp = self.observe_keypoints(kp, cam, joints_c, toes_c, people if use_mesh else [], rng)
            box = compute_crop_box(kp, crop)
            if box is None:
                continue
            box = box.jittered(rng, cfg.box_jitter_scale, cfg.box_jitter_shift)
            crop_intr = box.crop_intrinsics(cam.intrinsics, crop.height, crop.width)
            valid = crop_valid_region(box.affine(crop.height, crop.width), cam.width, cam.height)
            if use_mesh:
                image = self.render_mesh_crop(people, cam, crop_intr, crop.height, crop.width, rng, valid,
                                              box.h / crop.height)
            else:
                image = self.renderer.render(
                    joints_c, crop_intr, crop.height, crop.width, rng, toes_cam=toes_c, valid_region=valid,
                    resolution_scale=box.h / crop.height,
                )
            inputs = encode_person(image, kp, box, cam.intrinsics, crop)
            return make_sample(inputs, joints_c, kp, cam.intrinsics, box, (cam.width, cam.height),
                               keypoints_gt_px=gt_px.astype(np.float32))
        raise RuntimeError(f"no usable sample after {cfg.max_tries} tries; camera/noise settings too harsh?")


    def observe_keypoints(self, keypoints_px: np.ndarray, cam: Any, joints_cam: np.ndarray, toes_cam: np.ndarray,
                          people: list, rng: np.random.Generator) -> np.ndarray:
        """The 2D keypoints (17, 3) ``[u, v, conf]`` camera pixels the lifter gets for this scene.

        Default: ``keypoints_px``, the synthetic detector noise. Evaluation with the built-in detector
        (:mod:`lbi_ros.evaluation.detector_input`) overrides this to render the scene and run the detector;
        ``cam`` is the virtual camera, ``joints_cam``/``toes_cam`` the camera-frame pose (m), ``people`` the
        posed mesh people ([] for capsule people). ``rng`` must not be advanced by an override that wants the
        rest of the sample to stay as it is.
        """
        return keypoints_px

    def render_mesh_crop(self, people: list, cam: Any, crop_intr: Any, height: int, width: int,
                         rng: np.random.Generator, valid: tuple[float, float, float, float],
                         resolution_scale: float) -> np.ndarray:
        """A crop of mesh ``people`` (see :meth:`MeshPeople.render_crop`)."""
        return self.mesh_people.render_crop(people, cam, crop_intr, height, width, rng, self.renderer,
                                            valid_region=valid, resolution_scale=resolution_scale)

    def _mesh_people_for(self, identity: tuple[int, ...], joints_w: np.ndarray, toes_w: np.ndarray,
                         rng: np.random.Generator) -> list:
        """The subject (posed ``identity``) and, sometimes, a distractor: another identity in another pose,
        0.8-2.5 m from the subject in a random direction, so it may stand behind, beside or in front of
        the subject and occlude it, as people in a robot's view do. The labels are the subject's only."""
        mesh = self.mesh_people
        people = [mesh.pose(mesh.identity(identity), joints_w, toes_w)]
        if rng.random() < self.config.mesh.distractor_prob:
            other_j, other_t = self.sample_pose(rng)
            angle = rng.uniform(0, 2 * np.pi)
            shift = np.array([np.cos(angle), np.sin(angle), 0.0]) * rng.uniform(0.8, 2.5)
            shift[:2] += joints_w[0, :2] - other_j[0, :2]
            other = mesh.identity((*identity[:-1], identity[-1] // 4, 7))  # shared by 4 identity blocks
            people.append(mesh.pose(other, other_j + shift, other_t + shift))
        return people


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: samples are seeded per index, so workers only need their own numpy/cv2 threads off."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    try:  # one BLAS thread per worker (mesh people skin bodies with numpy matmuls)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - installed with the mesh-body stack
        pass
    log.debug("synthetic data worker %d ready", worker_id)


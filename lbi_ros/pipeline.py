"""preprocess -> backend -> postprocess: the one lifting path used by the node, the CLI and benchmarks.

For one frame: check the 2D people (:mod:`lbi_ros.input_checks`), map them to H36M-17 and build the
crops and model inputs (:mod:`lbi_ros.preprocess`), run every person as one batch through an
:class:`~lbi_ros.runtime.backend.InferenceBackend`, then place each root-relative pose in the camera
frame by solving the root translation from the 2D keypoints and the intrinsics
(:func:`lbi_ros.geometry.solve_root_translation`).

Nothing false leaves this module: a person whose output is not finite or whose root cannot be solved
is dropped with a named :class:`~lbi_ros.input_checks.Problem`, and the other people are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lbi_ros.geometry import Intrinsics, solve_root_translation
from lbi_ros.input_checks import InputLimits, PersonKeypoints, Problem, check_people
from lbi_ros.lens import LensDistortion
from lbi_ros.preprocess import CropConfig, prepare_inputs
from lbi_ros.runtime.backend import InferenceBackend
from lbi_ros.runtime.io_spec import IMAGE_CROP, JOINTS_3D, JOINTS_LOGVAR, IOSpec
from lbi_ros.skeleton import H36M17, ROOT_INDEX

# People are placed no farther than this (m): a lifted pose that only fits the 2D at a larger depth is
# implausibly small (a 2D person of 20 px at f = 500 px is 40 m away), and publishing it would be false.
MAX_ROOT_DEPTH_M = 40.0
# Joint confidence = 2D confidence x exp(-sigma / CONFIDENCE_SIGMA_M): a joint the lifter is unsure
# about by 10 cm (1 sigma per axis) keeps 37 % of its 2D confidence.
CONFIDENCE_SIGMA_M = 0.10


@dataclass(frozen=True)
class PersonLift:
    """One lifted person. Arrays are float64 numpy; J = 17 (H36M-17 order); metres, camera optical frame."""

    person_id: str
    score: float
    joints_cam_m: np.ndarray  # (J, 3) camera-frame positions
    joints_rel_m: np.ndarray  # (J, 3) root-relative pose as the lifter predicted it
    confidence: np.ndarray  # (J,) in [0, 1]
    uncertainty_m: np.ndarray  # (J,) 1-sigma per axis from the predicted log-variance
    valid: np.ndarray  # (J,) bool: the joint was present in 2D
    root_cam_m: np.ndarray  # (3,)
    root_depth_std_m: float
    reprojection_error_px: float


@dataclass(frozen=True)
class FrameLift:
    people: tuple[PersonLift, ...]
    problems: tuple[Problem, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)


class LiftingPipeline:
    """Lifts every person of a frame in one backend call. Stateless between frames; not thread-safe."""

    def __init__(self, backend: InferenceBackend, crop: CropConfig | None = None,
                 limits: InputLimits | None = None, max_root_depth_m: float = MAX_ROOT_DEPTH_M) -> None:
        if not max_root_depth_m > 0:
            raise ValueError(f"max_root_depth_m must be > 0, got {max_root_depth_m}")
        self.backend = backend
        self.max_root_depth_m = max_root_depth_m
        self.crop = crop or CropConfig()
        self.limits = limits or InputLimits()
        self.joint_names = H36M17.joint_names
        self.parents = H36M17.parents
        self.square_size = square_input_size(backend.io_spec, self.crop)

    def lift(self, image_rgb: np.ndarray, intrinsics: Intrinsics, people: Sequence[PersonKeypoints],
             joint_set: str = "h36m17", lens: LensDistortion | None = None) -> FrameLift:
        """``image_rgb`` (H, W, 3) uint8; ``people`` keypoints in ``joint_set`` layout, full-image pixels.

        ``lens``: ``image_rgb`` is the raw image of a distorted camera and the keypoints are already
        undistorted (ideal pinhole pixels); crops are then sampled through the lens model.
        """
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        checked = check_people(people, (image_rgb.shape[1], image_rgb.shape[0]), self.limits)
        problems = list(checked.problems)
        if not checked.people:
            timings["crop"] = (time.perf_counter() - t0) * 1e3
            return FrameLift((), tuple(problems), timings)
        keypoints = np.stack([p.keypoints_px for p in checked.people]).astype(np.float32)  # (P, J_src, 3)
        batch = prepare_inputs(image_rgb, keypoints, intrinsics, self.crop, joint_set=joint_set, lens=lens,
                               square_size=self.square_size)
        t1 = time.perf_counter()
        timings["crop"] = (t1 - t0) * 1e3
        if batch.inputs is None:
            return FrameLift((), tuple(problems), timings)
        feeds = {name: array for name, array in batch.inputs.as_dict().items()
                 if name in self.backend.io_spec.input_names}
        outputs = self.backend.infer(feeds)
        t2 = time.perf_counter()
        timings["infer"] = (t2 - t1) * 1e3
        lifted = self._postprocess(outputs, batch.keypoints_px, intrinsics,
                                   [checked.people[i] for i in batch.person_index], problems)
        timings["postprocess"] = (time.perf_counter() - t2) * 1e3
        return FrameLift(tuple(lifted), tuple(problems), timings)

    def _postprocess(self, outputs: dict[str, np.ndarray], keypoints_px: np.ndarray, intrinsics: Intrinsics,
                     people: list[PersonKeypoints], problems: list[Problem]) -> list[PersonLift]:
        joints_rel = np.asarray(outputs[JOINTS_3D], dtype=np.float64)  # (B, J, 3)
        sigma = np.exp(0.5 * np.asarray(outputs[JOINTS_LOGVAR], dtype=np.float64))  # (B, J)
        conf2d = keypoints_px[:, :, 2].astype(np.float64)  # (B, J)
        present = conf2d > self.crop.min_confidence
        root = solve_root_translation(joints_rel, keypoints_px[:, :, :2].astype(np.float64),
                                      np.where(present, conf2d, 0.0), intrinsics)
        lifted = []
        for b, person in enumerate(people):
            if not (np.all(np.isfinite(joints_rel[b])) and np.all(np.isfinite(sigma[b]))):
                problems.append(Problem("nonfinite_output", f"person {person.person_id!r}: the lifter returned "
                                        "NaN/inf; nothing published for this person"))
                continue
            if not bool(root.valid[b]):
                problems.append(Problem("root_unsolvable", f"person {person.person_id!r}: the camera-frame "
                                        "position could not be solved from the 2D joints; skipped"))
                continue
            translation = np.asarray(root.translation[b], dtype=np.float64)
            if translation[2] > self.max_root_depth_m:
                problems.append(Problem("implausible_depth", f"person {person.person_id!r}: the lifted pose only fits "
                                        f"the 2D keypoints {translation[2]:.0f} m away (limit {self.max_root_depth_m:.0f}"
                                        " m): the pose is implausibly small; skipped"))
                continue
            lifted.append(PersonLift(
                person_id=person.person_id,
                score=person.score,
                joints_cam_m=joints_rel[b] + translation,
                joints_rel_m=joints_rel[b],
                confidence=np.clip(conf2d[b], 0, 1) * np.exp(-sigma[b] / CONFIDENCE_SIGMA_M),
                uncertainty_m=sigma[b],
                valid=present[b],
                root_cam_m=translation,
                root_depth_std_m=root_depth_std(joints_rel[b], sigma[b], present[b], float(translation[2])),
                reprojection_error_px=float(root.reprojection_error_px[b]),
            ))
        return lifted


def square_input_size(io_spec: IOSpec, crop: CropConfig) -> int | None:
    """N when the model reads an N x N image that is not the box crop: the shared square person crop
    (``lbi_gated``, :func:`lbi_ros.preprocess.square_box`); None for the box crop or no image."""
    if not io_spec.has_input(IMAGE_CROP):
        return None
    h, w = io_spec.input(IMAGE_CROP).shape[2:]
    return int(h) if h == w and (h, w) != (crop.height, crop.width) else None


def root_depth_std(joints_rel_m: np.ndarray, sigma_m: np.ndarray, present: np.ndarray, depth_m: float) -> float:
    """Approximate 1-sigma error of the root depth (m), propagated from the pose-size uncertainty.

    Root depth comes from scale: a skeleton of spread s that projects to a fixed 2D spread sits at a
    depth proportional to s, so dz / z ~ ds / s. With s the RMS distance of the present joints from
    the root and ds their mean sigma, std(z) ~ z * mean(sigma) / s. A first-order estimate, not a
    calibrated one: it tells consumers that distant and small people have uncertain depth.
    """
    mask = present.copy()
    mask[ROOT_INDEX] = False
    if mask.sum() < 1:
        return float("inf")
    spread = float(np.sqrt(np.mean(np.sum(joints_rel_m[mask] ** 2, axis=1))))
    if spread <= 1e-6:
        return float("inf")
    return abs(depth_m) * float(np.mean(sigma_m[mask])) / spread

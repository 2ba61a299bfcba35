"""preprocess -> backend -> postprocess: the one lifting path used by the node, the CLI and benchmarks.

For one frame: check the 2D people (:mod:`lbi_ros.input_checks`), map them to H36M-17 and build the
crops and model inputs (:mod:`lbi_ros.preprocess`), run every person as one batch through an
:class:`~lbi_ros.runtime.backend.InferenceBackend`, then place each root-relative pose in the camera
frame by solving the root translation from the 2D keypoints and the intrinsics
(:func:`lbi_ros.geometry.solve_root_translation`).

Shared backbone (a gated lifter over a BlazePose tap, with the built-in detector): a person may come with a
:class:`~lbi_ros.pose2d.roi.SharedCrop`, the upright square the landmark pass ran on and that pass's map of it.
Its box is then the one that square was made from (same centre, height = side, width = side x crop aspect),
and with a ``head`` backend (the lifter without its backbone, ``features`` in place of ``image_crop``:
:func:`lbi_ros.runtime.factory.create_head_backend`) no crop is cut and only the head runs for it; the other
people of the frame go through the whole model as before. Without a lens only (the landmark crop is cut
from the raw image, the lifter's through the lens model).

Nothing false leaves this module: a person whose output is not finite or whose root cannot be solved
is dropped with a named :class:`~lbi_ros.input_checks.Problem`, and the other people are kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lbi_ros.geometry import Intrinsics, solve_root_translation
from lbi_ros.input_checks import InputLimits, PersonKeypoints, Problem, check_people
from lbi_ros.lens import LensDistortion
from lbi_ros.pose2d.roi import SharedCrop
from lbi_ros.preprocess import CropBox, CropConfig, ModelInputs, prepare_inputs
from lbi_ros.runtime.backend import InferenceBackend
from lbi_ros.runtime.io_spec import FEATURES, IMAGE_CROP, JOINTS_3D, JOINTS_LOGVAR, square_input_size
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
                 limits: InputLimits | None = None, max_root_depth_m: float = MAX_ROOT_DEPTH_M,
                 head: InferenceBackend | None = None) -> None:
        if not max_root_depth_m > 0:
            raise ValueError(f"max_root_depth_m must be > 0, got {max_root_depth_m}")
        self.backend = backend
        self.max_root_depth_m = max_root_depth_m
        self.crop = crop or CropConfig()
        self.limits = limits or InputLimits()
        self.joint_names = H36M17.joint_names
        self.parents = H36M17.parents
        self.square_size = square_input_size(backend.io_spec, self.crop)
        self.head = None if head is None else _checked_head(head, backend)

    def share_backbone(self, model_path: str | Path | None, backend: str = "auto",
                       cache_dir: str | Path | None = None) -> str | None:
        """For a gated lifter over a BlazePose tap (``model_path``, the checkpoint ``self.backend`` runs): load its
        head and return the tap a landmark pass must hand over (``DetectorConfig.share_features_tap``); else None."""
        from lbi_ros.runtime.factory import create_head_backend

        found = create_head_backend(model_path, backend, cache_dir=cache_dir)
        if found is None or self.square_size is None:
            return None
        self.head = _checked_head(found[1], self.backend)
        return found[0]

    def lift(self, image_rgb: np.ndarray, intrinsics: Intrinsics, people: Sequence[PersonKeypoints],
             joint_set: str = "h36m17", lens: LensDistortion | None = None,
             shared: Mapping[str, SharedCrop] | None = None, color_order: str = "rgb") -> FrameLift:
        """``image_rgb`` (H, W, 3) uint8; ``people`` keypoints in ``joint_set`` layout, full-image pixels.
        ``color_order`` ``"bgr"``: the image is BGR and only the crops are swapped to RGB (no full-frame copy).

        ``lens``: ``image_rgb`` is the raw image of a distorted camera and the keypoints are already
        undistorted (ideal pinhole pixels); crops are then sampled through the lens model.
        ``shared``: person id -> its shared crop (module doc); ignored with a lens or a model without a square crop.
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
        boxes, features = self._shared(checked.people, shared if lens is None else None)
        reads_image = self.backend.io_spec.has_input(IMAGE_CROP)  # a 2D-only lifter: no crop is cut at all
        batch = prepare_inputs(image_rgb, keypoints, intrinsics, self.crop, joint_set=joint_set, lens=lens,
                               color_order=color_order, square_size=self.square_size, given_boxes=boxes,
                               cut=[reads_image and p not in features for p in range(len(keypoints))])
        t1 = time.perf_counter()
        timings["crop"] = (t1 - t0) * 1e3
        if batch.inputs is None:
            return FrameLift((), tuple(problems), timings)
        outputs = self._infer(batch.inputs, {b: features[p] for b, p in enumerate(batch.person_index) if p in features})
        t2 = time.perf_counter()
        timings["infer"] = (t2 - t1) * 1e3
        lifted = self._postprocess(outputs, batch.keypoints_px, intrinsics,
                                   [checked.people[i] for i in batch.person_index], problems)
        timings["postprocess"] = (time.perf_counter() - t2) * 1e3
        return FrameLift(tuple(lifted), tuple(problems), timings)

    def _shared(self, people: Sequence[PersonKeypoints], shared: Mapping[str, SharedCrop] | None
                ) -> tuple[list[CropBox | None] | None, dict[int, np.ndarray]]:
        """Per person: the box its shared crop was made from (None: the box rule); person -> given features."""
        if not shared or self.square_size is None:
            return None, {}
        boxes: list[CropBox | None] = []
        features: dict[int, np.ndarray] = {}
        for p, person in enumerate(people):
            crop = shared.get(person.person_id)
            if crop is not None and crop.roi.rotation_rad != 0.0:
                raise ValueError(f"person {person.person_id!r}: a shared crop is upright, got a rotated ROI")
            side = crop.roi.size_px if crop is not None else 0.0
            boxes.append(None if crop is None else CropBox(crop.roi.center_u, crop.roi.center_v,
                                                           side * self.crop.aspect, side))
            if crop is not None and crop.features is not None and self.head is not None:
                features[p] = crop.features
        return boxes, features

    def _infer(self, inputs: ModelInputs, features: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows with given features through the head, the others through the whole model; outputs in row order."""
        head_rows = sorted(features)
        full_rows = [b for b in range(len(inputs)) if b not in features]
        parts = []
        for rows, backend in ((full_rows, self.backend), (head_rows, self.head)):
            if not rows:
                continue
            part = inputs if len(rows) == len(inputs) else inputs.select(rows)
            feeds = {name: array for name, array in part.as_dict().items() if name in backend.io_spec.input_names}
            if backend is self.head:
                feeds[FEATURES] = np.stack([features[b] for b in rows]).astype(np.float32, copy=False)
            parts.append((rows, backend.infer(feeds)))
        if len(parts) == 1:
            return parts[0][1]
        merged = {}
        for name in (JOINTS_3D, JOINTS_LOGVAR):
            merged[name] = np.empty((len(inputs), *parts[0][1][name].shape[1:]), np.float32)
            for rows, out in parts:
                merged[name][rows] = out[name]
        return merged

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


def _checked_head(head: InferenceBackend, backend: InferenceBackend) -> InferenceBackend:
    """``head`` if it is a lifter head (``features`` in) with ``backend``'s keypoint inputs and outputs."""
    spec, full = head.io_spec, backend.io_spec
    if not spec.has_input(FEATURES) or not full.has_input(IMAGE_CROP):
        raise ValueError(f"a head takes {FEATURES!r} and serves a model that reads {IMAGE_CROP!r}; got inputs "
                         f"{list(spec.input_names)} for a model with {list(full.input_names)}")
    same = [t for t in spec.inputs if t.name != FEATURES] == [t for t in full.inputs if t.name != IMAGE_CROP]
    if not same or spec.outputs != full.outputs:
        raise ValueError("the head's keypoint inputs or outputs differ from the lifter's: not the same model")
    return head


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

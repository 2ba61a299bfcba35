"""Evaluation with the built-in detector's 2D (``lbi eval ... --keypoints detector``, issue 17).

The synthetic evaluation set (:func:`~lbi_ros.evaluation.sets.rendered_eval_set`) feeds the lifters 2D
keypoints made by the synthetic noise model (:mod:`lbi_ros.synth.noise2d`). Here the 2D comes from the
BlazePose detector + landmark model (:class:`~lbi_ros.pose2d.detector.PersonDetector`) run on a rendering of
the same scene, and everything after the 2D is the synthetic path unchanged.

Per sample (same seed, frame, camera and person as the synthetic set; the synthetic noise is still drawn,
so every later random choice is the one the synthetic sample made):

1. **Detector view.** A square region of the camera image around the person, ``view_margin`` x the larger
   side of the projected true joints, rendered at ``view_size`` px (intrinsics changed as the renderer does
   for crops, :meth:`~lbi_ros.preprocess.CropBox.crop_intrinsics`). The lifter's 128 x 96 crop is too small
   for the detector (issue 17: 65 % found on upsampled crops). A person smaller than the view in the camera
   image is rendered at the camera's resolution and upsampled (``resolution_scale``), so the detector never
   sees detail the camera would not have; what lies outside the camera image is black, as at deployment.
   The view draws the same appearance (clothes, background) as the lifter's crop.
2. **Detection.** The detector runs on the view from scratch (no tracking). The person is the detection
   whose landmark box overlaps the true person's 2D box most; below ``min_iou`` (nobody, or a distractor
   only) the sample is **missed**: it is left out and counted, never scored.
3. **Back to the camera.** The 33 landmarks are mapped from view pixels to camera pixels; landmarks outside
   the camera image get confidence 0 (:func:`~lbi_ros.pose2d.keypoint_source.mark_unseen`, as the node's
   ``builtin`` mode does); MediaPipe-33 -> H36M-17 by :func:`~lbi_ros.skeleton.map_to_h36m`. From there the
   sample is built exactly as a synthetic one: box rule, crop render, :func:`~lbi_ros.preprocess.encode_person`.

Extras per found sample: ``keypoints_gt_px`` (17, 2), ``image_size`` (2,), ``world_landmarks`` (33, 3) the
landmark model's world points (m, hip-centred, image-aligned axes), ``roi_center_px`` (2,) the landmark
ROI's centre in camera pixels (for :mod:`lbi_ros.evaluation.peer`), ``detector_score`` (1,).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lbi_ros.evaluation.sets import EvalSet, _FrameRenderSet, choose_eval_frames, stack_samples
from lbi_ros.geometry import project
from lbi_ros.pose2d.detector import DetectorConfig, PersonDetector, mark_unseen
from lbi_ros.pose2d.keypoint_source import default_backend
from lbi_ros.preprocess import CropBox
from lbi_ros.render.capsule.renderer import crop_valid_region
from lbi_ros.skeleton import map_to_h36m
from lbi_ros.synth.dataset import SyntheticDataConfig

log = logging.getLogger(__name__)

DETECTOR_EXTRA_KEYS = ("keypoints_gt_px", "image_size", "world_landmarks", "roi_center_px", "detector_score")


@dataclass(frozen=True)
class DetectorInputConfig:
    """How the detector sees a rendered evaluation sample (module doc)."""

    view_size: int = 320  # px, square; the detector letterboxes to 224, the landmark crop is 256
    view_margin: float = 1.75  # view side / larger side of the true 2D joints' box
    min_iou: float = 0.3  # a detection overlapping the true 2D box less is not this person (a miss)
    backend: str = ""  # PersonDetector backend; '' = ONNX Runtime when installed, else torch

    def __post_init__(self) -> None:
        if self.view_size < 64:
            raise ValueError(f"view_size must be >= 64 px, got {self.view_size}")
        if not self.view_margin >= 1.0:
            raise ValueError(f"view_margin must be >= 1, got {self.view_margin}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")


@dataclass(frozen=True)
class DetectorEvalSet:
    """The found samples as an :class:`EvalSet`, plus what was not found.

    ``sample_index`` (N_found,): index in the synthetic set (0..num_samples-1) of each found sample;
    ``missed_index``: the rest. ``detection_rate`` = found / (found + missed).
    """

    eval_set: EvalSet
    sample_index: np.ndarray
    missed_index: np.ndarray

    @property
    def num_total(self) -> int:
        return int(self.sample_index.size + self.missed_index.size)

    @property
    def detection_rate(self) -> float:
        return float(self.sample_index.size) / max(self.num_total, 1)

    def summary(self) -> dict[str, Any]:
        """``keypoints``, ``num_rendered``, ``num_detected``, ``num_missed``, ``detection_rate`` (percent)."""
        return {"keypoints": "detector", "num_rendered": self.num_total, "num_detected": int(self.sample_index.size),
                "num_missed": int(self.missed_index.size), "detection_rate": 100.0 * self.detection_rate}


class PersonMissed(Exception):
    """The detector did not find the rendered person (raised out of ``generate``; the sample is skipped)."""


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``[x0, y0, x1, y1]`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def view_box(points_px: np.ndarray, margin: float) -> CropBox:
    """Square :class:`CropBox` around ``points_px`` (K, 2): centre of their box, side ``margin`` x its larger side."""
    lo, hi = points_px.min(0), points_px.max(0)
    side = max(float((hi - lo).max()) * margin, 8.0)
    centre = (lo + hi) / 2
    return CropBox(float(centre[0]), float(centre[1]), side, side)


class DetectorRenderSet(_FrameRenderSet):
    """The evaluation renderer with :meth:`observe_keypoints` replaced by the built-in detector (module doc).

    After each :meth:`render_frame`, :attr:`last_observation` holds the sample's detector extras.
    """

    def __init__(self, config: SyntheticDataConfig, joints: np.ndarray | None, toes: np.ndarray | None,
                 detector_input: DetectorInputConfig = DetectorInputConfig(),
                 detector: PersonDetector | None = None) -> None:
        super().__init__(config, joints, toes)
        self.detector_input = detector_input
        if detector is None:
            backend = detector_input.backend or default_backend()
            detector = PersonDetector(DetectorConfig(backend=backend, reuse_landmark_roi=False))  # type: ignore[arg-type]
        self.detector = detector
        self.last_observation: dict[str, np.ndarray] = {}

    def render_view(self, cam: Any, joints_cam: np.ndarray, toes_cam: np.ndarray, people: list,
                    rng: np.random.Generator) -> tuple[np.ndarray, CropBox]:
        """The detector's view (S, S, 3) uint8 and its box in camera pixels."""
        cfg = self.detector_input
        size = cfg.view_size
        points = project(np.concatenate([joints_cam, toes_cam]), cam.intrinsics)  # (19, 2) px
        box = view_box(points, cfg.view_margin)
        intr = box.crop_intrinsics(cam.intrinsics, size, size)
        valid = crop_valid_region(box.affine(size, size), cam.width, cam.height)
        scale = min(1.0, box.h / size)  # the camera's own resolution, upsampled
        # Replay the crop box's jitter draws (CropBox.jittered: 1 + 2 uniforms) on a copy, so the view draws the
        # same appearance as the lifter's crop rendered next from ``rng``, which stays untouched.
        view_rng = copy.deepcopy(rng)
        view_rng.uniform(-1.0, 1.0)
        view_rng.uniform(-1.0, 1.0, size=2)
        if people:
            image = self.render_mesh_crop(people, cam, intr, size, size, view_rng, valid, scale)
        else:
            image = self.renderer.render(joints_cam, intr, size, size, view_rng, toes_cam=toes_cam,
                                         valid_region=valid, resolution_scale=scale)
        return image, box

    def observe_keypoints(self, keypoints_px: np.ndarray, cam: Any, joints_cam: np.ndarray, toes_cam: np.ndarray,
                          people: list, rng: np.random.Generator) -> np.ndarray:
        """Detector keypoints (17, 3) camera pixels; raises :class:`PersonMissed` (module doc)."""
        size = self.detector_input.view_size
        image, box = self.render_view(cam, joints_cam, toes_cam, people, rng)
        self.detector.reset()  # unrelated images: no tracking, the detector runs every time
        found = self.detector.detect(image)
        gt_px = project(joints_cam, cam.intrinsics)  # (17, 2)
        gt_view = box.to_crop_pixels(gt_px, size, size)
        gt_box = np.concatenate([gt_view.min(0), gt_view.max(0)])
        best, best_iou = None, self.detector_input.min_iou
        for person in found:
            pts = person.keypoints_px[:, :2]
            iou = _box_iou(np.concatenate([pts.min(0), pts.max(0)]), gt_box)
            if iou >= best_iou:
                best, best_iou = person, iou
        if best is None:
            raise PersonMissed(f"{len(found)} detection(s), none overlaps the person (IoU >= "
                               f"{self.detector_input.min_iou})")
        m = box.affine(size, size)  # camera px -> view px: u_view = m00 u + m02
        kp33 = np.array(best.keypoints_px, dtype=np.float64)  # (33, 3) view px
        kp33[:, 0] = (kp33[:, 0] - m[0, 2]) / m[0, 0]
        kp33[:, 1] = (kp33[:, 1] - m[1, 2]) / m[1, 1]
        kp33 = mark_unseen(kp33, cam.width, cam.height)
        kp17 = map_to_h36m(kp33, "mediapipe33").astype(np.float32)  # (17, 3)
        roi_c = (best.roi.center - m[:, 2]) / np.diag(m)[:2]
        self.last_observation = {
            "world_landmarks": np.asarray(best.world_m, np.float32),
            "roi_center_px": roi_c.astype(np.float32),
            "detector_score": np.array([best.score], np.float32),
        }
        return kp17


def detector_eval_set(
    cache_dir: str, split: str | None, num_samples: int, seed: int = 12345,
    data: SyntheticDataConfig | None = None, detector_input: DetectorInputConfig = DetectorInputConfig(),
    detector: PersonDetector | None = None, render_set: type[DetectorRenderSet] | None = None,
) -> DetectorEvalSet:
    """The samples of ``rendered_eval_set(cache_dir, split, num_samples, seed, data)`` with the detector's 2D.

    Same frames, seeds and box rule as :func:`~lbi_ros.evaluation.sets.rendered_eval_set`; only the found
    people are in the returned set (module doc). ``detector``: a ready :class:`PersonDetector` (tests).
    ``render_set``: a :class:`DetectorRenderSet` subclass that draws another model input (the gated
    lifter's square crop, :mod:`lbi_ros.training.square_crops`).
    """
    frames = choose_eval_frames(cache_dir, split, num_samples, seed, data)
    config, chosen, labels = frames.config, frames.chosen, frames.labels
    dataset = (render_set or DetectorRenderSet)(config, frames.joints, frames.toes, detector_input, detector)
    samples, found, missed = [], [], []
    for i in range(num_samples):
        if i and i % 100 == 0:
            log.info("detector input: %d/%d rendered, %d found", i, num_samples, len(found))
        frame = int(chosen[i]) if chosen[i] >= 0 else None
        try:
            sample = dataset.render_frame(frame, np.random.default_rng([seed, i]))
        except PersonMissed as exc:
            log.debug("sample %d missed: %s", i, exc)
            missed.append(i)
            continue
        sample.update(dataset.last_observation)
        samples.append(sample)
        found.append(i)
    if not samples:
        raise ValueError(f"the detector found none of the {num_samples} rendered people")
    name = f"{cache_dir or 'procedural'}:{split or 'all'}:detector"
    out = stack_samples(name, samples, crop_mean=tuple(config.crop.mean), crop_std=tuple(config.crop.std))
    extras = dict(out.extras)
    extras.update({k: np.stack([s[k] for s in samples]).astype(np.float32) for k in DETECTOR_EXTRA_KEYS})
    index = np.asarray(found, dtype=np.int64)
    out = replace(out, labels={k: v[index] for k, v in labels.items()}, extras=extras)
    return DetectorEvalSet(out, index, np.asarray(missed, dtype=np.int64))

"""Synthetic samples whose image is the shared 256x256 person crop (the pose backbone's input), not the 128x96 one.

Why: the frozen BlazePose encoder (docs/pose_backbone.md) expects a square, person-centred crop about 1.25x
the person. :func:`lbi_ros.pose2d.roi.person_roi_from_box` defines it from the deployment crop box (same
centre, side = box height, upright), so training, evaluation, the node and the detector share one rule.
Here the renderer draws *straight into* that square by changing the intrinsics (no resampling), exactly as
it does for the 128x96 crop.

Everything else of a sample (pose, camera, 2D noise, box, targets) is the unchanged synthetic pipeline:
rendering is the last consumer of the sample's random stream, so a sample of :class:`SquareCropDataset`
has the same keypoints, box and 3D targets as the :class:`~lbi_ros.synth.dataset.SyntheticPoseDataset`
sample with the same seed/index (its ``image_crop`` is a black placeholder; the square crop is in
``image_square`` (256, 256, 3) uint8 RGB).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from lbi_ros.evaluation.detector_input import DetectorEvalSet, DetectorRenderSet, detector_eval_set
from lbi_ros.evaluation.sets import EvalSet, _FrameRenderSet, rendered_eval_set
from lbi_ros.geometry import Intrinsics
from lbi_ros.preprocess import normalize_image
from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

SQUARE_SIZE = 256
"""Side of the shared crop in pixels (BlazePose landmark-net input)."""


def square_from_crop(intrinsics: Intrinsics, valid: tuple[float, float, float, float] | None, height: int,
                     width: int, size: int = SQUARE_SIZE) -> tuple[Intrinsics, tuple[float, float, float, float] | None]:
    """Crop intrinsics / valid region of the ``height x width`` box crop -> those of the concentric square
    crop of side ``box.h`` drawn at ``size`` px (both crops share the box centre and the vertical scale).

    A crop pixel coordinate ``x'`` maps to ``size/2 - 0.5 + (x' - (width/2 - 0.5)) * size / height``.
    """
    k = size / height

    def sx(x: float) -> float:
        return size / 2 - 0.5 + (x - (width / 2 - 0.5)) * k

    def sy(y: float) -> float:
        return size / 2 - 0.5 + (y - (height / 2 - 0.5)) * k

    square = Intrinsics(fx=intrinsics.fx * k, fy=intrinsics.fy * k, cx=sx(intrinsics.cx), cy=sy(intrinsics.cy))
    region = None if valid is None else (sx(valid[0]), sy(valid[1]), sx(valid[2]), sy(valid[3]))
    return square, region


class _SquareRenderer:
    """Proxy of a :class:`PersonRenderer`: ``render`` draws the square crop and returns a black box crop."""

    def __init__(self, base: Any, owner: _SquareCropMixin) -> None:
        self._base = base
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def render(self, joints_cam: Any, intrinsics: Intrinsics, height: int, width: int, rng: np.random.Generator,
               valid_region: tuple[float, float, float, float] | None = None, resolution_scale: float = 1.0,
               **kwargs: Any) -> np.ndarray:
        intr, region = square_from_crop(intrinsics, valid_region, height, width)
        self._owner.last_square = self._base.render(
            joints_cam, intr, SQUARE_SIZE, SQUARE_SIZE, rng, valid_region=region,
            resolution_scale=resolution_scale * height / SQUARE_SIZE, **kwargs)
        return np.zeros((height, width, 3), np.uint8)


class _SquareCropMixin:
    """Overrides the two drawing hooks of :class:`SyntheticPoseDataset`; adds ``image_square`` to samples."""

    last_square: np.ndarray | None = None
    plain: bool = False
    """True while drawing something that is not the lifter's crop (the detector's view): hooks pass through."""

    @property
    def renderer(self) -> Any:
        base = SyntheticPoseDataset.renderer.fget(self)  # type: ignore[attr-defined]
        return base if self.plain else _SquareRenderer(base, self)

    def render_mesh_crop(self, people: list, cam: Any, crop_intr: Any, height: int, width: int,
                         rng: np.random.Generator, valid: tuple[float, float, float, float],
                         resolution_scale: float) -> np.ndarray:
        if self.plain:
            return super().render_mesh_crop(people, cam, crop_intr, height, width, rng,  # type: ignore[misc]
                                            valid, resolution_scale)
        intr, region = square_from_crop(crop_intr, valid, height, width)
        base = SyntheticPoseDataset.renderer.fget(self)  # type: ignore[attr-defined]
        self.last_square = self.mesh_people.render_crop(  # type: ignore[attr-defined]
            people, cam, intr, SQUARE_SIZE, SQUARE_SIZE, rng, base, valid_region=region,
            resolution_scale=resolution_scale * height / SQUARE_SIZE)
        return np.zeros((height, width, 3), np.uint8)

    def with_square(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.last_square is None:
            raise RuntimeError("no square crop was rendered for this sample")
        sample["image_square"] = self.last_square
        self.last_square = None
        return sample


class SquareCropDataset(_SquareCropMixin, SyntheticPoseDataset):
    """Training pool: :class:`SyntheticPoseDataset` samples with ``image_square`` (256, 256, 3) uint8."""

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.with_square(super().__getitem__(index))


class SquareFrameRenderSet(_SquareCropMixin, _FrameRenderSet):
    """Evaluation pool: the samples of :func:`lbi_ros.evaluation.sets.rendered_eval_set` with ``image_square``."""

    def render_frame(self, frame: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.with_square(super().render_frame(frame, rng))


class SquareEvalRenderSet(SquareFrameRenderSet):
    """The evaluation samples with the model input ``image_crop`` = the normalised square crop (3, 256, 256)."""

    def render_frame(self, frame: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return _square_as_model_input(self.config, super().render_frame(frame, rng))


class SquareDetectorRenderSet(_SquareCropMixin, DetectorRenderSet):
    """:class:`DetectorRenderSet` (the built-in detector's 2D) with ``image_crop`` the square crop cut by the box
    rule from the *detected* keypoints; the detector's own view is drawn by the plain renderer."""

    def render_view(self, *args: Any, **kwargs: Any) -> Any:
        self.plain = True
        try:
            return super().render_view(*args, **kwargs)
        finally:
            self.plain = False

    def render_frame(self, frame: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return _square_as_model_input(self.config, self.with_square(super().render_frame(frame, rng)))


def _square_as_model_input(config: SyntheticDataConfig, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    square = replace(config.crop, height=SQUARE_SIZE, width=SQUARE_SIZE)
    sample["image_crop"] = normalize_image(sample.pop("image_square"), square)  # (3, 256, 256) float32
    return sample


def square_eval_set(cache_dir: str, split: str | None, num_samples: int, seed: int = 12345,
                    data: SyntheticDataConfig | None = None) -> EvalSet:
    """:func:`rendered_eval_set` (the same samples: frames, cameras, 2D noise, boxes, targets) with each
    ``image_crop`` the shared 256x256 square crop rendered as for training (the ``lbi_gated`` lifter's input).

    Memory: N x 3 x 256 x 256 float32 (0.79 MB per sample).
    """
    return rendered_eval_set(cache_dir, split, num_samples, seed, data, render_set=SquareEvalRenderSet)


def square_detector_eval_set(cache_dir: str, split: str | None, num_samples: int, seed: int = 12345,
                             data: SyntheticDataConfig | None = None) -> DetectorEvalSet:
    """:func:`~lbi_ros.evaluation.detector_input.detector_eval_set` (the detector's 2D, found people only) with
    ``image_crop`` the shared square crop: ``lbi eval <gated> --keypoints detector``."""
    return detector_eval_set(cache_dir, split, num_samples, seed, data, render_set=SquareDetectorRenderSet)


def eval_config(data: SyntheticDataConfig, cache_dir: str, split: str, num_samples: int, seed: int) -> SyntheticDataConfig:
    """The config :func:`rendered_eval_set` derives (no box jitter, no procedural poses)."""
    return replace(data, cache_dir=cache_dir, split=split, seed=seed, procedural_fraction=0.0,
                   samples_per_epoch=max(num_samples, 1), box_jitter_scale=0.0, box_jitter_shift=0.0)

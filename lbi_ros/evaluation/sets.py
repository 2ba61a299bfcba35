"""Evaluation sets: stacked model inputs + targets + labels, built once and reused (deterministic).

* :func:`rendered_eval_set`: a mocap cache (``lbi data prepare-mocap``) split, or every clip when ``split`` is
  None, rendered through the training data pipeline with a fixed seed. Frames are taken evenly over the
  selected clips (sample i -> frame ``i * F // N``), the camera, 2D noise and crop come from
  ``default_rng([seed, i])``: two runs give identical inputs. The crop box is the deployment box rule's,
  without the training augmentation's scale/shift jitter (``box_jitter_*`` forced to 0: the random draws
  still happen, so every other random choice of a sample is the one it had with jitter). Without a cache,
  procedural poses.
* :func:`benchmark_eval_set`: any map-style dataset with the synthetic sample keys (Human3.6M, MPI-INF-3DHP
  loaders in :mod:`lbi_ros.datasets`), stacked in order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lbi_ros.preprocess import INPUT_NAMES
from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

log = logging.getLogger(__name__)

EXTRA_KEYS = ("root_cam", "box", "intrinsics", "keypoints_px", "joints_3d_univ")


@dataclass(frozen=True)
class EvalSet:
    """N samples: ``inputs`` (model inputs by contract name), ``joints_3d`` (N, J, 3) root-relative camera
    metres, ``labels`` (name -> (N,) strings, e.g. content/style/action), ``extras`` (root_cam, box, ...).

    The benchmark protocol (:mod:`lbi_ros.evaluation.core`): ``average_over`` names the label whose
    per-value means the headline MPJPE averages (Human3.6M: ``"action"``); ``pck_target`` names the extra
    PCK/AUC compare with (MPI-INF-3DHP: ``"joints_3d_univ"``), None = ``joints_3d``; ``pck_joints`` the joints
    they score, None = all but the root.
    """

    name: str
    inputs: dict[str, np.ndarray]
    joints_3d: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    has_image: bool = True
    crop_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    crop_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    average_over: str | None = None
    pck_target: str | None = None
    pck_joints: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.average_over is not None and self.average_over not in self.labels:
            raise ValueError(f"{self.name}: average_over={self.average_over!r} is not a label ({sorted(self.labels)})")
        if self.pck_target is not None and self.pck_target not in self.extras:
            raise ValueError(f"{self.name}: pck_target={self.pck_target!r} is not an extra ({sorted(self.extras)})")

    def __len__(self) -> int:
        return int(self.joints_3d.shape[0])


def stack_samples(name: str, samples: Sequence[dict[str, Any]], label_keys: Sequence[str] = (),
                  has_image: bool = True, **kwargs: Any) -> EvalSet:
    """Stack per-sample dicts (the synthetic sample keys) into an :class:`EvalSet`."""
    if not samples:
        raise ValueError(f"evaluation set {name!r} is empty")
    inputs = {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in INPUT_NAMES}
    extras = {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in EXTRA_KEYS if k in samples[0]}
    labels = {k: np.array([str(s[k]) for s in samples]) for k in label_keys if k in samples[0]}
    joints = np.stack([s["joints_3d"] for s in samples]).astype(np.float64)
    return EvalSet(name, inputs, joints, labels, extras, has_image, **kwargs)


class _FrameRenderSet(SyntheticPoseDataset):
    """The synthetic pipeline with the pose fixed to one chosen mocap frame per sample."""

    def __init__(self, config: SyntheticDataConfig, joints: np.ndarray | None, toes: np.ndarray | None) -> None:
        super().__init__(config)
        self._joints, self._toes = joints, toes
        self._frame: int | None = None

    def sample_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self._frame is None or self._joints is None or self._toes is None:
            return self._procedural.sample(rng)
        return self._joints[self._frame], self._toes[self._frame]

    def render_frame(self, frame: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
        self._frame = frame
        return self.generate(rng)


@dataclass(frozen=True)
class EvalFrames:
    """Which mocap frames an evaluation renders, and the data config it renders them with."""

    config: SyntheticDataConfig
    """``data`` with the cache, split and seed set, procedural poses off and the box jitter off."""
    chosen: np.ndarray
    """(N,) cache frame per sample, spread evenly over the split's sorted frames; -1 = procedural pose."""
    labels: dict[str, np.ndarray]
    """content / style / name per sample (empty without a cache)."""
    joints: np.ndarray | None
    toes: np.ndarray | None


def choose_eval_frames(cache_dir: str, split: str | None, num_samples: int, seed: int,
                       data: SyntheticDataConfig | None = None) -> EvalFrames:
    """The one frame choice of every rendered evaluation set (``rendered_eval_set``, the detector-input set)."""
    config = replace(data or SyntheticDataConfig(), cache_dir=cache_dir, split=split or "test", seed=seed,
                     procedural_fraction=0.0, samples_per_epoch=max(num_samples, 1),
                     box_jitter_scale=0.0, box_jitter_shift=0.0)
    if not cache_dir:
        return EvalFrames(config, np.full(num_samples, -1), {}, None, None)
    from lbi_ros.mocap.cache import SPLITS, load_mocap_cache

    cache = load_mocap_cache(cache_dir)
    frames = np.sort(np.concatenate([cache.frame_indices(s) for s in ([split] if split else SPLITS)]))
    if frames.size == 0:
        raise ValueError(f"{cache_dir}: no frames in split {split!r}")
    chosen = frames[(np.arange(num_samples) * frames.size) // num_samples]
    labels = {k: cache.frame_labels(chosen, k).astype(str) for k in ("content", "style", "name")}
    return EvalFrames(config, chosen, labels, cache.joints, cache.toes)


def rendered_eval_set(
    cache_dir: str, split: str | None, num_samples: int, seed: int = 12345,
    data: SyntheticDataConfig | None = None, render_set: type[_FrameRenderSet] | None = None,
) -> EvalSet:
    """Render ``num_samples`` fixed samples of ``split`` (None = all clips) of the cache at ``cache_dir``.

    ``data`` supplies camera, noise, render and augmentation settings (default: the training defaults);
    its cache/split/seed/sampling fields are ignored and its box jitter is turned off (the node crops with
    the plain box rule). Empty ``cache_dir``: procedural poses. ``render_set``: the renderer of the samples
    (default :class:`_FrameRenderSet`; the shared square crop: :func:`lbi_ros.training.square_crops.square_eval_set`).
    """
    frames = choose_eval_frames(cache_dir, split, num_samples, seed, data)
    config, chosen, labels = frames.config, frames.chosen, frames.labels
    dataset = (render_set or _FrameRenderSet)(config, frames.joints, frames.toes)
    samples = []
    for i in range(num_samples):
        frame = int(chosen[i]) if chosen[i] >= 0 else None
        samples.append(dataset.render_frame(frame, np.random.default_rng([seed, i])))
    name = f"{cache_dir or 'procedural'}:{split or 'all'}"
    out = stack_samples(name, samples, crop_mean=tuple(config.crop.mean), crop_std=tuple(config.crop.std))
    return replace(out, labels=labels)


def benchmark_eval_set(name: str, dataset: Any, label_keys: Sequence[str] = ("action", "subject", "scene"),
                       limit: int | None = None, *, average_over: str | None = None, pck_target: str | None = None,
                       pck_joints: Sequence[int] | None = None) -> EvalSet:
    """Stack a benchmark dataset (``__len__``/``__getitem__`` with the synthetic sample keys); the keyword
    arguments set its protocol (:class:`EvalSet`)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    samples = [dataset[i] for i in range(n)]
    has_image = bool(samples[0].get("has_image", True)) if samples else True
    crop = getattr(getattr(dataset, "config", None), "crop", None)
    kwargs = {"crop_mean": tuple(crop.mean), "crop_std": tuple(crop.std)} if crop is not None else {}
    if not has_image:
        log.warning("%s has no images: image lifters see blank crops", name)
    kwargs.update(average_over=average_over, pck_target=pck_target,
                  pck_joints=None if pck_joints is None else tuple(pck_joints))
    return stack_samples(name, samples, label_keys, has_image=has_image, **kwargs)

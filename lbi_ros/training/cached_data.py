"""Batches from a feature-cache pool, with fresh 2D detector noise every epoch.

Why: the backbone features of a pool are fixed (:mod:`lbi_ros.training.feature_cache`), but the 2D input
the image must help with is not: each epoch re-draws detector-like noise (:func:`apply_detector_noise`)
from the stored clean projections and re-encodes the keypoints against the stored crop box (the box the
square crop was cut by, so the image and the keypoints stay registered). Both lifters of a matched pair
read the same batches.

Determinism and exact resume: global sample ``g`` (step ``s`` reads ``g = s * B ... s * B + B - 1``) falls in
epoch ``e`` (epochs follow each other, epoch ``e`` has ``R_e`` rows, see :class:`CachedFeatureStream`); it is
row ``perm_e[g - start_e]``, ``perm_e`` a permutation seeded by ``(seed, e)``, and its noise is drawn from
``default_rng([seed, e, row])``: a batch depends only on ``(pool, seed, step, R_0, R_1, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lbi_ros.evaluation.reliance import GREY, derangement
from lbi_ros.geometry import Intrinsics
from lbi_ros.preprocess import CropBox, encode_keypoints
from lbi_ros.synth.noise2d import Noise2DConfig, apply_detector_noise
from lbi_ros.training.feature_cache import load_pool


@dataclass(frozen=True)
class FeatureBatch:
    """One batch as float32 tensors: ``features`` (B, C, g, g), ``keypoints_crop`` (B, 17, 3),
    ``keypoints_cam`` (B, 17, 2), ``crop_cam`` (B, 4), ``joints_3d`` (B, 17, 3) root-relative metres."""

    features: torch.Tensor
    keypoints_crop: torch.Tensor
    keypoints_cam: torch.Tensor
    crop_cam: torch.Tensor
    joints_3d: torch.Tensor

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"keypoints_crop": self.keypoints_crop, "keypoints_cam": self.keypoints_cam, "crop_cam": self.crop_cam}


class CachedFeatureStream:
    """Training batches from a pool directory, possibly while the pool is still being built.

    Epoch ``e`` uses the first ``R_e`` rows of the pool, ``R_e`` = the finished prefix when the epoch is
    first reached (at most ``max_rows``). ``epoch_rows`` records every ``R_e``; a resumed run passes it
    back, so it replays exactly the same rows.
    """

    def __init__(self, pool_dir: str | Path, tap: str, noise: Noise2DConfig, seed: int = 0,
                 max_rows: int | None = None, epoch_rows: dict[int, int] | None = None) -> None:
        self.pool_dir = Path(pool_dir)
        self.arrays, _, self.meta = load_pool(pool_dir)
        self.max_rows = max_rows
        self.epoch_rows: dict[int, int] = dict(epoch_rows or {})
        self.tap = tap
        self.noise = noise
        self.seed = seed
        self._perm: tuple[int, int, np.ndarray] | None = None
        self._epoch_start: dict[int, int] = {}
        if self.finished_prefix() == 0 and not self.epoch_rows:
            raise ValueError(f"{pool_dir}: no finished chunks")

    def finished_prefix(self) -> int:
        """Rows 0 .. R-1 are finished (the longest run of finished chunks from chunk 0)."""
        _, rows, _ = load_pool(self.pool_dir)
        prefix = int(np.sum(rows == np.arange(rows.size)))
        return min(prefix, self.max_rows) if self.max_rows else prefix

    def rows_of(self, epoch: int) -> int:
        if epoch not in self.epoch_rows:
            self.epoch_rows[epoch] = self.finished_prefix()
        return self.epoch_rows[epoch]

    def _row(self, g: int) -> tuple[int, int]:
        # global sample g -> (epoch, row): epochs have different sizes, so walk them from the first
        epoch, start = 0, 0
        if self._perm is not None and g >= self._perm[1]:
            epoch, start = self._perm[0], self._perm[1]
        while g >= start + self.rows_of(epoch):
            start += self.rows_of(epoch)
            epoch += 1
        if self._perm is None or self._perm[0] != epoch:
            n = self.rows_of(epoch)
            self._perm = (epoch, start, np.random.default_rng([self.seed, epoch]).permutation(n))
        return epoch, int(self._perm[2][g - start])

    def noisy_keypoints(self, row: int, epoch: int) -> np.ndarray:
        """Fresh detector-like keypoints (17, 3) for ``row`` in ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch, row])
        w, h = (float(x) for x in self.arrays["image_size"][row])
        return apply_detector_noise(self.arrays["keypoints_gt_px"][row], rng, self.noise, image_size=(w, h))

    def batch(self, step: int, batch_size: int) -> FeatureBatch:
        rows, kc, kcam, ccam = [], [], [], []
        for g in range(step * batch_size, (step + 1) * batch_size):
            epoch, row = self._row(g)
            a, b, c = _encode_row(self.arrays, row, self.noisy_keypoints(row, epoch))
            rows.append(row)
            kc.append(a)
            kcam.append(b)
            ccam.append(c)
        order = np.argsort(rows)  # ascending reads from the memmap; the batch order is restored below
        feats = np.empty((len(rows), *self.arrays[f"feat_{self.tap}"].shape[1:]), np.float32)
        feats[order] = self.arrays[f"feat_{self.tap}"][np.asarray(rows)[order]]
        return FeatureBatch(
            torch.from_numpy(feats),
            torch.from_numpy(np.stack(kc)),
            torch.from_numpy(np.stack(kcam)),
            torch.from_numpy(np.stack(ccam)),
            torch.from_numpy(self.arrays["joints_3d"][np.asarray(rows)].astype(np.float32)),
        )


def eval_batches(pool_dir: str | Path, tap: str, batch_size: int = 512, images: str = "real", seed: int = 0,
                 noise: Noise2DConfig | None = None) -> list[FeatureBatch]:
    """A finished evaluation pool as fixed batches: the stored noisy keypoints (those ``lbi eval`` scores).

    ``images``: ``real``; ``shuffled`` (each sample gets another sample's features: a seeded derangement);
    ``blank`` (every sample gets the features of a uniform grey crop). ``noise``: instead of the stored
    keypoints, draw fixed keypoints from the clean projections with this model (``default_rng([seed, 1 << 20,
    row])``; e.g. the detector-like fit ``config/data/detector_noise.yaml``), encoded against the stored box.
    """
    arrays, rows, _ = load_pool(pool_dir)
    if noise is not None:
        arrays = {**arrays, **_redrawn_inputs(arrays, rows, noise, seed)}
    feats = np.asarray(arrays[f"feat_{tap}"][rows], dtype=np.float32)
    if images == "shuffled":
        feats = feats[derangement(rows.size, seed)]
    elif images == "blank":
        feats = np.broadcast_to(grey_features(tap), feats.shape).copy()
    elif images != "real":
        raise ValueError(f"images must be real/shuffled/blank, got {images!r}")
    out = []
    for lo in range(0, rows.size, batch_size):
        r = rows[lo: lo + batch_size]
        out.append(FeatureBatch(
            torch.from_numpy(feats[lo: lo + batch_size]),
            torch.from_numpy(np.asarray(arrays["keypoints_crop"][r], np.float32)),
            torch.from_numpy(np.asarray(arrays["keypoints_cam"][r], np.float32)),
            torch.from_numpy(np.asarray(arrays["crop_cam"][r], np.float32)),
            torch.from_numpy(np.asarray(arrays["joints_3d"][r], np.float32)),
        ))
    return out


def _redrawn_inputs(arrays: dict[str, np.ndarray], rows: np.ndarray, noise: Noise2DConfig,
                    seed: int) -> dict[str, np.ndarray]:
    """Model inputs of fresh fixed noisy keypoints for ``rows`` (full-length arrays, other rows zero)."""
    n = arrays["keypoints_crop"].shape[0]
    out = {"keypoints_crop": np.zeros((n, 17, 3), np.float32), "keypoints_cam": np.zeros((n, 17, 2), np.float32),
           "crop_cam": np.zeros((n, 4), np.float32)}
    for row in rows:
        w, h = (float(x) for x in arrays["image_size"][row])
        kp = apply_detector_noise(arrays["keypoints_gt_px"][row], np.random.default_rng([seed, 1 << 20, int(row)]),
                                  noise, image_size=(w, h))
        kc, kcam, ccam = _encode_row(arrays, row, kp)
        out["keypoints_crop"][row], out["keypoints_cam"][row], out["crop_cam"][row] = kc, kcam, ccam
    return out


def _encode_row(arrays: dict[str, np.ndarray], row: int, keypoints_px: np.ndarray) -> tuple[np.ndarray, ...]:
    """Model inputs (keypoints_crop, keypoints_cam, crop_cam) of ``keypoints_px`` against ``row``'s stored box."""
    fx, fy, cx, cy = (float(x) for x in arrays["intrinsics"][row])
    return encode_keypoints(keypoints_px, CropBox.from_array(arrays["box"][row]), Intrinsics(fx, fy, cx, cy))


def grey_features(tap: str) -> np.ndarray:
    """Backbone features (1, C, g, g) of a uniform mid-grey square crop (fp16-rounded like the cache)."""
    from lbi_ros.training.feature_cache import encode_squares, make_encoder

    grey = np.full((1, 256, 256, 3), GREY, np.uint8)
    return encode_squares(make_encoder((tap,)), grey)[tap].astype(np.float16).astype(np.float32)

"""2D detector error model: turns projected ground-truth joints into detector-like keypoints.

Applied to H36M-17 pixels (17, 2) of one person; returns (17, 3) ``[u, v, confidence]``. Components:

* **Jitter**: Gaussian, per joint, with standard deviation ``sigma * k_j * person_height_px`` where
  ``sigma ~ U(sigma_range)`` per sample (a sharp or a sloppy detector) and ``k_j`` is a per-joint factor
  following COCO's per-keypoint OKS sigmas (wrists/ankles are noisier than hips/shoulders).
* **Outliers**: with probability ``outlier_prob`` per joint, a large error (``outlier_scale`` x height).
* **Left/right swaps**: with probability ``swap_prob`` per limb pair (shoulder-elbow-wrist or
  hip-knee-ankle), the detector labels that limb's joints with the other side's positions.
* **Dropouts**: per joint with ``dropout_prob``; joints outside the image are dropped with
  ``outside_drop_prob``. Dropped joints have confidence 0 (and coordinates 0).
* **Gross failures** (``gross_failure_prob``, default 0): per person, every joint gets an extra Gaussian
  error of ``gross_failure_scale`` x height, the way a detector that latched onto the wrong pose looks.
  Drawn only when the probability is > 0, so configs without it keep their random streams.
* **Per-joint factors** (``joint_factors``): 17 values replacing the COCO-derived ``k_j`` below (empty =
  those), e.g. fitted to a real detector by :mod:`lbi_ros.synth.noise_fit`.
* **Confidence**: visible joints get ``c = clip(c0 - a * err / sigma_px_ref + N(0, 0.05))`` with
  ``c0 ~ U(0.75, 0.98)`` per sample, so larger errors come with lower confidence, in [0.1, 1].
* **COCO synthesis** (``synthesize="coco17"``): pelvis, thorax and spine are recomputed from the noisy
  hips/shoulders exactly as :func:`lbi_ros.skeleton.map_to_h36m` synthesizes them from a COCO detector,
  with min-confidence propagation; the training inputs then carry the same correlated errors as
  deployment inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lbi_ros.skeleton import H36M17

# Per-joint noise factors (relative), from COCO OKS sigmas (hips 1.07, knees .87, ankles .89, shoulders .79,
# elbows .72, wrists .62 in units of 0.1): OKS sigmas measure annotation spread relative to object scale;
# detectors' errors follow similar ratios. Synthesized joints get the average of their sources.
_FACTORS = {
    "pelvis": 0.9, "r_hip": 1.07, "r_knee": 0.87, "r_ankle": 0.89, "l_hip": 1.07, "l_knee": 0.87,
    "l_ankle": 0.89, "spine": 0.9, "thorax": 0.79, "neck_nose": 0.5, "head": 0.9, "l_shoulder": 0.79,
    "l_elbow": 0.72, "l_wrist": 0.62, "r_shoulder": 0.79, "r_elbow": 0.72, "r_wrist": 0.62,
}  # fmt: skip
JOINT_NOISE_FACTORS = np.array([_FACTORS[n] for n in H36M17.joint_names])
_LIMB_PAIRS = (((11, 12, 13), (14, 15, 16)), ((4, 5, 6), (1, 2, 3)))  # (left limb, right limb)


@dataclass(frozen=True)
class Noise2DConfig:
    sigma_range: tuple[float, float] = (0.002, 0.02)  # x k_j x person height (px)
    outlier_prob: float = 0.01
    outlier_scale: float = 0.12
    swap_prob: float = 0.01
    dropout_prob: float = 0.02
    outside_drop_prob: float = 0.97
    synthesize: Literal["coco17", "none"] = "coco17"
    gross_failure_prob: float = 0.0  # per person; 0 = off (no extra random draws)
    gross_failure_scale: float = 0.25  # x person height (px), per axis
    joint_factors: tuple[float, ...] = ()  # 17 per-joint k_j; empty = JOINT_NOISE_FACTORS

    def __post_init__(self) -> None:
        lo, hi = self.sigma_range
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma_range must satisfy 0 <= low <= high, got {self.sigma_range}")
        if len(self.joint_factors) not in (0, 17) or any(not k >= 0 for k in self.joint_factors):
            raise ValueError(f"joint_factors must be empty or 17 values >= 0, got {self.joint_factors}")
        if not self.gross_failure_scale >= 0:
            raise ValueError(f"gross_failure_scale must be >= 0, got {self.gross_failure_scale}")
        for name in ("outlier_prob", "swap_prob", "dropout_prob", "outside_drop_prob", "gross_failure_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Noise2DConfig.{name} must be a probability, got {getattr(self, name)}")


def person_height_px(pixels: np.ndarray) -> float:
    """Size of a 2D pose: the larger side of its bounding box (at least 1 px)."""
    p = pixels[np.all(np.isfinite(pixels), -1)]
    if p.shape[0] == 0:
        return 1.0
    return float(max(1.0, (p.max(0) - p.min(0)).max()))


def apply_detector_noise(
    pixels: np.ndarray,
    rng: np.random.Generator,
    config: Noise2DConfig = Noise2DConfig(),
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Ground-truth H36M-17 pixels (17, 2) -> detector-like keypoints (17, 3) ``[u, v, conf]`` (float32).

    ``image_size`` = (width, height) enables dropping joints outside the image.
    """
    gt = np.asarray(pixels, dtype=np.float64)
    if gt.shape != (17, 2):
        raise ValueError(f"pixels must be H36M-17 (17, 2), got {gt.shape}")
    n = 17
    height = person_height_px(gt)
    u = rng.random(4 + 3 * n)  # one draw for all uniforms
    g = rng.standard_normal((3 * n + 2 * n,))  # jitter (2n), outliers (2n), confidence (n)
    lo, hi = config.sigma_range
    sigma = (lo + (hi - lo) * u[0]) * height
    factors = np.asarray(config.joint_factors) if config.joint_factors else JOINT_NOISE_FACTORS
    err = g[: 2 * n].reshape(n, 2) * (sigma * factors)[:, None]
    outliers = u[4 : 4 + n] < config.outlier_prob
    if outliers.any():
        err[outliers] += g[2 * n : 4 * n].reshape(n, 2)[outliers] * (config.outlier_scale * height)
    if config.gross_failure_prob > 0 and rng.random() < config.gross_failure_prob:
        err += rng.standard_normal((n, 2)) * (config.gross_failure_scale * height)
    noisy = gt + err
    for k, (left, right) in enumerate(_LIMB_PAIRS):
        if u[1 + k] < config.swap_prob:
            li, ri = list(left), list(right)
            noisy[li], noisy[ri] = noisy[ri].copy(), noisy[li].copy()
    # Confidence falls with the error relative to a reference scale (2 % of the person's size).
    err_px = np.sqrt(((noisy - gt) ** 2).sum(-1))
    conf = (0.75 + 0.23 * u[3]) - 0.08 * err_px / max(0.02 * height, 1.0) + 0.05 * g[4 * n :]
    np.clip(conf, 0.1, 1.0, out=conf)
    keep = (u[4 + n : 4 + 2 * n] >= config.dropout_prob) & np.isfinite(noisy).all(-1)
    if image_size is not None:
        w, h = image_size
        inside = (noisy[:, 0] >= 0) & (noisy[:, 0] <= w - 1) & (noisy[:, 1] >= 0) & (noisy[:, 1] <= h - 1)
        keep &= inside | (u[4 + 2 * n :] >= config.outside_drop_prob)
    out = np.zeros((n, 3))
    out[:, :2] = noisy
    out[:, 2] = conf
    if config.synthesize == "coco17":
        # pelvis = mid-hips, thorax = mid-shoulders, spine = mean of both; confidence = min of sources
        for j, src in ((0, [1, 4]), (8, [11, 14]), (7, [1, 4, 11, 14])):
            if keep[src].all():
                out[j, :2] = out[src, :2].mean(0)
                out[j, 2] = out[src, 2].min()
                keep[j] = True
            else:
                keep[j] = False
    out[~keep] = 0.0
    return out.astype(np.float32)

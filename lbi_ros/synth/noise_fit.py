"""Fit the synthetic 2D noise model (:mod:`lbi_ros.synth.noise2d`) to a real detector's measured errors.

Issue 17: the noise the lifters train on (~1.5 px in a 128-px crop, few swaps) is far more benign than the
built-in BlazePose detector (~3 px median, gross failures, 3-7 % swapped sides). :func:`measure_errors`
compares the detector's H36M-17 keypoints with the projected true joints of the same rendered people
(:mod:`lbi_ros.evaluation.detector_input`, train split) and :func:`fit_noise_config` turns the statistics
into :class:`~lbi_ros.synth.noise2d.Noise2DConfig` fields. ``lbi bench detector-noise`` runs both and
writes a data config.

Errors are in units of the person's size ``h`` (:func:`~lbi_ros.synth.noise2d.person_height_px` of the
true joints, pixels), as the noise model draws them. Per detected person, in this order:

1. **Swaps**, per limb pair (arms: shoulder-elbow-wrist; legs: hip-knee-ankle): the pair is swapped when
   comparing each detected limb with the *other* side's true limb halves the mean error and the straight
   error exceeds ``swap_min_error`` h. Swapped pairs are swapped back before the next steps.
2. **Gross failure**: more than half of the visible joints are off by more than ``outlier_threshold`` h.
3. **Outliers** (in the other people): joints off by more than ``outlier_threshold`` h.
4. **Jitter**: the remaining joints. Per joint j, ``r_j`` = RMS per-axis error / h; the model's factors are
   ``k_j = r_j / mean(r)``. Per person, ``s = sqrt(mean_j(e_j^2 / k_j^2) / 2)``; the model draws
   ``sigma ~ U(lo, hi)``, fitted to the mean and spread of ``s`` (U's std is (hi - lo) / sqrt(12)).
5. **Dropouts**: joints inside the image that the detector reports missing (confidence <= the crop's
   ``min_confidence``). ``outside_drop_prob`` is 1: the model drops a joint whose *noisy* position is outside
   the image, and the node drops every landmark placed outside (``mark_unseen``). The measured share of
   truly-outside joints that are missing (the detector often places them just inside) is reported. The synthesised
   joints (pelvis, spine, thorax) are not counted: the model re-derives them from hips and shoulders.

People the detector misses never reach the lifter, so the miss rate is reported, not modelled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from lbi_ros.synth.noise2d import Noise2DConfig, person_height_px

_LIMB_PAIRS = (((11, 12, 13), (14, 15, 16)), ((4, 5, 6), (1, 2, 3)))  # arms, legs: (left, right)
_SYNTHESISED = (0, 7, 8)  # pelvis, spine, thorax


@dataclass(frozen=True)
class DetectorErrorStats:
    """What :func:`measure_errors` found; rates are fractions in [0, 1], errors in person heights."""

    num_rendered: int
    num_detected: int
    miss_rate: float
    swap_rate_arms: float
    swap_rate_legs: float
    gross_failure_rate: float
    gross_failure_scale: float  # RMS per-axis error of the gross failures' joints / h
    outlier_rate: float
    outlier_scale: float  # RMS per-axis error of the outliers / h
    joint_rms: tuple[float, ...]  # (17,) r_j of the jitter joints
    sigma_mean: float  # mean and std of the per-person s
    sigma_std: float
    dropout_rate: float
    outside_drop_rate: float
    median_error: float  # median joint error / h of detected people (all visible joints)

    def as_dict(self) -> dict:
        return asdict(self)


def measure_errors(
    detected_px: np.ndarray, truth_px: np.ndarray, image_size: np.ndarray, num_missed: int,
    min_confidence: float = 0.05, outlier_threshold: float = 0.1, swap_min_error: float = 0.03,
) -> DetectorErrorStats:
    """Error statistics of N detected people.

    ``detected_px`` (N, 17, 3) H36M-17 ``[u, v, conf]`` camera pixels; ``truth_px`` (N, 17, 2) projected true
    joints; ``image_size`` (N, 2) ``[width, height]``; ``num_missed`` people the detector did not find.
    """
    det = np.asarray(detected_px, np.float64).copy()
    gt = np.asarray(truth_px, np.float64)
    size = np.asarray(image_size, np.float64)
    n = det.shape[0]
    if det.shape != (n, 17, 3) or gt.shape != (n, 17, 2) or size.shape != (n, 2) or n == 0:
        raise ValueError(f"need (N>0, 17, 3), (N, 17, 2), (N, 2); got {det.shape}, {gt.shape}, {size.shape}")
    heights = np.array([person_height_px(g) for g in gt])  # (N,) px
    seen = det[..., 2] > min_confidence  # (N, 17)
    inside = (gt >= 0).all(-1) & (gt[..., 0] <= size[:, None, 0] - 1) & (gt[..., 1] <= size[:, None, 1] - 1)
    swaps = np.zeros((n, 2), bool)
    pair_ok = np.zeros((n, 2), bool)
    for k, (left, right) in enumerate(_LIMB_PAIRS):
        idx = list(left) + list(right)
        flip = list(right) + list(left)
        both = seen[:, idx].all(1)
        straight = np.linalg.norm(det[:, idx, :2] - gt[:, idx], axis=-1).mean(1) / heights
        crossed = np.linalg.norm(det[:, idx, :2] - gt[:, flip], axis=-1).mean(1) / heights
        pair_ok[:, k] = both
        swaps[:, k] = both & (crossed < 0.5 * straight) & (straight > swap_min_error)
        for i in np.flatnonzero(swaps[:, k]):  # swap back: label each limb as the side it was placed on
            det[i, idx] = det[i, flip]
    err = np.linalg.norm(det[..., :2] - gt, axis=-1) / heights[:, None]  # (N, 17) in h
    direct = np.ones(17, bool)
    direct[list(_SYNTHESISED)] = False
    far = (err > outlier_threshold) & seen
    gross = far.sum(1) > 0.5 * np.maximum(seen.sum(1), 1)
    ok_people = ~gross
    outliers = far & ok_people[:, None]
    jitter = seen & ~far & ok_people[:, None]
    joint_rms = np.array([np.sqrt((err[jitter[:, j], j] ** 2).mean() / 2) if jitter[:, j].any() else np.nan
                          for j in range(17)])
    factors = joint_rms / np.nanmean(joint_rms)
    factors = np.where(np.isfinite(factors), factors, 1.0)
    s = np.array([np.sqrt(((err[i, jitter[i]] / factors[jitter[i]]) ** 2).mean() / 2)
                  for i in range(n) if jitter[i].sum() >= 3])

    def rms(values: np.ndarray) -> float:
        return float(np.sqrt((values**2).mean() / 2)) if values.size else 0.0

    in_direct = inside & direct
    out_direct = ~inside & direct
    return DetectorErrorStats(
        num_rendered=n + int(num_missed), num_detected=n, miss_rate=int(num_missed) / (n + int(num_missed)),
        swap_rate_arms=float(swaps[:, 0].sum() / max(pair_ok[:, 0].sum(), 1)),
        swap_rate_legs=float(swaps[:, 1].sum() / max(pair_ok[:, 1].sum(), 1)),
        gross_failure_rate=float(gross.mean()), gross_failure_scale=rms(err[gross][seen[gross]]),
        outlier_rate=float(outliers.sum() / max((seen & ok_people[:, None]).sum(), 1)),
        outlier_scale=rms(err[outliers]),
        joint_rms=tuple(float(v) for v in np.nan_to_num(joint_rms, nan=0.0)),
        sigma_mean=float(s.mean()) if s.size else 0.0, sigma_std=float(s.std()) if s.size else 0.0,
        dropout_rate=float((~seen & in_direct).sum() / max(in_direct.sum(), 1)),
        outside_drop_rate=float((~seen & out_direct).sum() / max(out_direct.sum(), 1)) if out_direct.any() else 1.0,
        median_error=float(np.median(err[seen])),
    )


def fit_noise_config(stats: DetectorErrorStats, base: Noise2DConfig | None = None) -> Noise2DConfig:
    """The noise model's fields from ``stats`` (module doc); ``base`` (default: the defaults) supplies the
    rest (``synthesize``)."""
    base = base or Noise2DConfig()
    rms = np.asarray(stats.joint_rms, np.float64)
    factors = rms / rms[rms > 0].mean() if (rms > 0).any() else np.ones(17)
    half = np.sqrt(3.0) * stats.sigma_std  # U(lo, hi) with the measured mean and std
    lo, hi = float(max(0.0, stats.sigma_mean - half)), float(stats.sigma_mean + half)
    return replace(
        base,
        sigma_range=(round(lo, 5), round(hi, 5)),
        joint_factors=tuple(round(float(k), 3) for k in factors),
        outlier_prob=round(stats.outlier_rate, 4),
        outlier_scale=round(stats.outlier_scale, 4),
        swap_prob=round((stats.swap_rate_arms + stats.swap_rate_legs) / 2, 4),
        dropout_prob=round(stats.dropout_rate, 4),
        outside_drop_prob=1.0,  # the node drops every landmark placed outside the image (mark_unseen)
        gross_failure_prob=round(stats.gross_failure_rate, 4),
        gross_failure_scale=round(stats.gross_failure_scale, 4) if stats.gross_failure_rate > 0 else base.gross_failure_scale,
    )

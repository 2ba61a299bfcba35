"""3D pose metrics: MPJPE (P1), P-MPJPE (P2), N-MPJPE, MPJVE, PCK and AUC (MPI-INF-3DHP convention).

All functions take ``predicted`` and ``target`` of shape (..., J, 3) as numpy arrays or torch tensors (same
kind for both) and return the same kind. Units are those of the inputs (the project uses metres; reports
convert to millimetres). Nothing here root-aligns implicitly except where the protocol says so:
MPJPE (Protocol 1) as used in the literature is computed on root-relative poses, so pass root-relative
joints or use ``root_index``.

``reduction``: ``"mean"`` (scalar over everything), ``"per_joint"`` (J,) mean over all leading axes,
``"none"`` (..., J) per-joint errors. ``weights`` (..., J), optional, e.g. a validity mask: joints with
weight 0 are excluded from means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from lbi_ros.geometry import _is_torch, _xp, procrustes_align

Reduction = Literal["mean", "per_joint", "none"]
PCK_THRESHOLD_M = 0.150
AUC_THRESHOLDS_M = np.arange(0, 151, 5) / 1000.0  # 0, 5, ..., 150 mm (3DHP convention: 31 thresholds)


def _check(predicted: Any, target: Any, name: str) -> None:
    if _is_torch(predicted) != _is_torch(target):
        raise TypeError(f"{name}: predicted and target must both be numpy arrays or both torch tensors")
    ps, ts = tuple(predicted.shape), tuple(target.shape)
    if ps != ts:
        raise ValueError(f"{name}: predicted shape {ps} != target shape {ts}")
    if len(ps) < 2 or ps[-1] != 3:
        raise ValueError(f"{name}: expected (..., J, 3) joints, got {ps}")


def _reduce(err: Any, reduction: Reduction, weights: Any | None, name: str) -> Any:
    """err (..., J) -> per reduction, honouring weights (..., J)."""
    xp = _xp(err)
    if weights is None:
        if reduction == "none":
            return err
        if reduction == "mean":
            return err.mean()
        if reduction == "per_joint":
            return err.reshape(-1, err.shape[-1]).mean(0)
    else:
        if tuple(weights.shape) != tuple(err.shape):
            raise ValueError(f"{name}: weights shape {tuple(weights.shape)} must equal {tuple(err.shape)}")
        w = weights.to(err.dtype) if _is_torch(err) else np.asarray(weights, dtype=err.dtype)
        if reduction == "none":
            return xp.where(w > 0, err, xp.zeros_like(err) * float("nan"))
        if reduction == "mean":
            return (err * w).sum() / w.sum()
        if reduction == "per_joint":
            e2, w2 = err.reshape(-1, err.shape[-1]), w.reshape(-1, w.shape[-1])
            return (e2 * w2).sum(0) / w2.sum(0)
    raise ValueError(f"{name}: reduction must be 'mean', 'per_joint' or 'none', got {reduction!r}")


def _root_align(x: Any, root_index: int | None) -> Any:
    return x if root_index is None else x - x[..., root_index : root_index + 1, :]


def joint_errors(predicted: Any, target: Any, root_index: int | None = None) -> Any:
    """Euclidean per-joint errors (..., J), optionally after subtracting each pose's root joint."""
    _check(predicted, target, "joint_errors")
    d = _root_align(predicted, root_index) - _root_align(target, root_index)
    xp = _xp(d)
    return xp.sqrt((d * d).sum(-1))


def mpjpe(
    predicted: Any, target: Any, reduction: Reduction = "mean", weights: Any | None = None,
    root_index: int | None = None,
) -> Any:
    """Protocol 1: mean per-joint position error (root alignment via ``root_index`` or by the caller)."""
    return _reduce(joint_errors(predicted, target, root_index), reduction, weights, "mpjpe")


def p_mpjpe(predicted: Any, target: Any, reduction: Reduction = "mean", weights: Any | None = None) -> Any:
    """Protocol 2: MPJPE after a per-pose similarity (rotation, translation, scale) Procrustes alignment."""
    _check(predicted, target, "p_mpjpe")
    aligned = procrustes_align(predicted, target)
    return _reduce(joint_errors(aligned, target), reduction, weights, "p_mpjpe")


def n_mpjpe(
    predicted: Any, target: Any, reduction: Reduction = "mean", weights: Any | None = None,
    root_index: int | None = None,
) -> Any:
    """MPJPE after the optimal per-pose scale (Rhodin et al. 2018; VideoPose3D's N-MPJPE)."""
    _check(predicted, target, "n_mpjpe")
    p, t = _root_align(predicted, root_index), _root_align(target, root_index)
    num = (p * t).sum((-1, -2))
    den = (p * p).sum((-1, -2))
    xp = _xp(p)
    scale = num / xp.where(den > 0, den, xp.ones_like(den))
    return _reduce(joint_errors(scale[..., None, None] * p, t), reduction, weights, "n_mpjpe")


def mpjve(predicted: Any, target: Any, reduction: Reduction = "mean", time_axis: int = 0) -> Any:
    """Mean per-joint velocity error: MPJPE of first differences along ``time_axis`` (units per frame)."""
    _check(predicted, target, "mpjve")
    if predicted.ndim < 3:
        raise ValueError(f"mpjve: expected (..., T, ..., J, 3) with a time axis, got {tuple(predicted.shape)}")
    if predicted.shape[time_axis] < 2:
        raise ValueError("mpjve: need at least 2 frames along the time axis")
    xp = _xp(predicted)
    if xp is np:
        vp, vt = np.diff(predicted, axis=time_axis), np.diff(target, axis=time_axis)
    else:
        vp, vt = xp.diff(predicted, dim=time_axis), xp.diff(target, dim=time_axis)
    return _reduce(joint_errors(vp, vt), reduction, None, "mpjve")


def pck(
    predicted: Any, target: Any, threshold: float = PCK_THRESHOLD_M, reduction: Reduction = "mean",
    weights: Any | None = None, root_index: int | None = None, strict: bool = False,
) -> Any:
    """Percentage (0..100) of joints with error <= ``threshold`` (same units as the poses; 0.150 m default).

    ``strict=True`` counts error < threshold, as the MPI-INF-3DHP test-set tool does (``mpii_compute_3d_pck.m``);
    the two differ only on exact ties, e.g. a root joint whose error is 0 by construction at threshold 0.
    """
    err = joint_errors(predicted, target, root_index)
    hit = ((err < threshold) if strict else (err <= threshold)) * 100.0
    return _reduce(hit if _is_torch(err) else hit.astype(err.dtype), reduction, weights, "pck")


def auc(
    predicted: Any, target: Any, thresholds: Sequence[float] | np.ndarray = AUC_THRESHOLDS_M,
    reduction: Reduction = "mean", weights: Any | None = None, root_index: int | None = None,
    strict: bool = False,
) -> Any:
    """Area under the PCK curve: mean PCK (0..100) over ``thresholds`` (0..150 mm step 5 by default).

    ``strict`` as in :func:`pck` (error < threshold: the MPI-INF-3DHP tool's rule, where PCK at 0 mm is 0).
    """
    err = joint_errors(predicted, target, root_index)
    xp = _xp(err)
    if xp is np:
        th = np.asarray(thresholds, dtype=err.dtype)
        hit = ((err[..., None] < th) if strict else (err[..., None] <= th)).mean(-1) * 100.0
    else:
        th = xp.as_tensor(np.asarray(thresholds), dtype=err.dtype, device=err.device)
        hit = ((err[..., None] < th) if strict else (err[..., None] <= th)).to(err.dtype).mean(-1) * 100.0
    return _reduce(hit, reduction, weights, "auc")


def aggregate_by_label(values: Any, labels: Sequence[Any] | np.ndarray) -> dict[Any, float]:
    """Mean of per-sample ``values`` (N,) per label (e.g. action), plus the mean over labels under
    ``"_average"`` (the Human3.6M convention averages actions, not samples)."""
    v = values.detach().cpu().numpy() if _is_torch(values) else np.asarray(values)
    labels = np.asarray(labels)
    if v.ndim != 1 or labels.shape != v.shape:
        raise ValueError(f"values (N,) and labels (N,) required, got {v.shape} and {labels.shape}")
    out: dict[Any, float] = {}
    for lab in sorted(set(labels.tolist())):
        out[lab] = float(v[labels == lab].mean())
    if out:
        out["_average"] = float(np.mean(list(out.values())))
    return out


def evaluate_batch(
    predicted: Any, target: Any, joint_names: Sequence[str] | None = None
) -> Mapping[str, float]:
    """Convenience summary in millimetres for root-relative poses in metres: MPJPE, P-MPJPE, N-MPJPE,
    PCK@150 mm and AUC."""

    def f(x: Any) -> float:
        return float(x.detach().cpu()) if _is_torch(x) else float(x)

    out = {
        "mpjpe_mm": 1000 * f(mpjpe(predicted, target)),
        "p_mpjpe_mm": 1000 * f(p_mpjpe(predicted, target)),
        "n_mpjpe_mm": 1000 * f(n_mpjpe(predicted, target)),
        "pck150": f(pck(predicted, target)),
        "auc": f(auc(predicted, target)),
    }
    if joint_names is not None:
        per = mpjpe(predicted, target, reduction="per_joint")
        per = per.detach().cpu().numpy() if _is_torch(per) else per
        out.update({f"mpjpe_mm/{n}": 1000 * float(e) for n, e in zip(joint_names, per, strict=True)})
    return out

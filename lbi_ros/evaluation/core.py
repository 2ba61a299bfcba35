"""The one evaluation code path: run a lifter over an :class:`EvalSet` and compute the metrics.

Used by ``lbi eval`` and by training's validation step. Metrics come from :mod:`lbi_ros.metrics`; poses are
root-relative camera-frame metres, reports are in millimetres (PCK and AUC in percent).

``depth_mpjpe_mm`` is the mean absolute error of the camera-z coordinate alone (root-relative): the axis a
2D pose leaves ambiguous and where image cues should help.

Benchmark protocols (the set says which, :class:`~lbi_ros.evaluation.sets.EvalSet`):

* **Human3.6M** (``average_over="action"``): ``mpjpe_mm`` and ``p_mpjpe_mm`` are the mean over actions of
  the per-action means, as the benchmark tables (and VideoPose3D's ``evaluate``) report them;
  ``mpjpe_mm_per_sample`` / ``p_mpjpe_mm_per_sample`` beside them are the plain means over samples.
* **MPI-INF-3DHP** (``pck_target="joints_3d_univ"``, ``pck_joints`` = the 14 official joints): PCK@150 mm
  and AUC (thresholds 0:5:150 mm, error < threshold) against the height-normalised "universal" skeleton
  (``univ_annot3``), over head top, neck, shoulders, elbows, wrists, hips, knees and ankles: the pelvis (the
  root, error 0 by construction), spine and head are left out, as in the test set's own evaluation code
  (``test_util/mpii_get_pck_auc_joint_groups.m`` and ``mpii_compute_3d_pck.m``, Mehta et al., 3DV 2017).
* Rendered sets: PCK/AUC over every joint but the root, by the same rule (error < threshold).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from lbi_ros.evaluation.sets import EvalSet
from lbi_ros.metrics import aggregate_by_label, auc, mpjpe, n_mpjpe, p_mpjpe, pck
from lbi_ros.preprocess import INPUT_NAMES
from lbi_ros.skeleton import H36M17

Output = Literal["refined", "coarse"]
AZIMUTH_BIN_DEG = 30


class BackendLifter(torch.nn.Module):
    """A deployed graph (an :class:`~lbi_ros.runtime.backend.InferenceBackend`: ONNX Runtime, TensorRT) behind
    the lifter's call signature, so ``lbi eval --runtime`` scores it with the same :func:`predict` and metrics as
    the PyTorch model: tensors in, numpy through ``backend.infer`` (as the node calls it), tensors out."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, **feeds: torch.Tensor) -> Any:
        from lbi_ros.model.lifter import LifterOutput

        names = self.backend.io_spec.input_names
        out = self.backend.infer({k: v.cpu().numpy() for k, v in feeds.items() if k in names})
        return LifterOutput(torch.from_numpy(out["joints_3d"]), torch.from_numpy(out["joints_logvar"]),
                            torch.from_numpy(out["joints_3d_coarse"]) if "joints_3d_coarse" in out else None)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def predict(
    model: torch.nn.Module, eval_set: EvalSet, batch_size: int = 128, output: Output = "refined",
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, float]:
    """Predictions (N, J, 3) float64 metres and the batched inference time per sample (ms).

    ``output="coarse"`` reads the stage-1 head (LBI phase 1); models without one fall back to ``joints_3d``.
    The model is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    preds = []
    elapsed = 0.0
    try:
        for start in range(0, len(eval_set), batch_size):
            feeds = {k: torch.from_numpy(eval_set.inputs[k][start : start + batch_size]).to(device)
                     for k in INPUT_NAMES}
            t0 = time.perf_counter()
            out = model(**feeds)
            elapsed += time.perf_counter() - t0
            joints = out.joints_3d_coarse if output == "coarse" and out.joints_3d_coarse is not None \
                else out.joints_3d
            preds.append(joints.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(preds).astype(np.float64), 1000.0 * elapsed / max(len(eval_set), 1)


def viewpoint_azimuth_deg(joints_3d: np.ndarray) -> np.ndarray:
    """Camera azimuth around the person (N,) degrees: 0 = person faces the camera, +-180 = seen from behind.

    Person frame from the target pose in camera axes (x right, y down, z forward): up = thorax - pelvis,
    left = left hip - right hip, facing = left x up (points at the camera when the person faces it).
    """
    up = joints_3d[:, 8] - joints_3d[:, 0]
    left = joints_3d[:, 4] - joints_3d[:, 1]
    facing = np.cross(left, up)
    return np.degrees(np.arctan2(facing[:, 0], -facing[:, 2]))


def compute_metrics(
    predicted: np.ndarray, target: np.ndarray, labels: dict[str, np.ndarray] | None = None,
    joint_names: Sequence[str] = H36M17.joint_names, *, average_over: str | None = None,
    pck_target: np.ndarray | None = None, pck_joints: Sequence[int] | None = None,
) -> dict[str, Any]:
    """All metrics for predictions vs targets (N, J, 3) root-relative metres. Per label: MPJPE and depth
    error per value.

    ``average_over``: a label (Human3.6M: ``"action"``) whose per-value means ``mpjpe_mm`` and ``p_mpjpe_mm``
    average (module doc); None = means over samples. ``pck_target`` (N, J, 3): the poses PCK/AUC compare
    with (MPI-INF-3DHP: the universal skeleton); None = ``target``. ``pck_joints``: the joints PCK/AUC score;
    None = all but the root (index 0).

    Keys: mpjpe_mm, p_mpjpe_mm, n_mpjpe_mm, depth_mpjpe_mm, pck150, auc, num_samples, averaged_over,
    mpjpe_mm_per_sample, p_mpjpe_mm_per_sample, pck_joints, per_joint_mm, per_joint_depth_mm, per_label,
    by_azimuth.
    """
    predicted = np.asarray(predicted, np.float64)
    target = np.asarray(target, np.float64)
    err = mpjpe(predicted, target, reduction="none")  # (N, J) m
    p_err = p_mpjpe(predicted, target, reduction="none")  # (N, J) m
    depth = np.abs(predicted[..., 2] - target[..., 2])  # (N, J) m
    sample_err, sample_depth = err.mean(1), depth.mean(1)
    num_joints = predicted.shape[-2]
    scored = tuple(range(1, num_joints)) if pck_joints is None else tuple(int(j) for j in pck_joints)
    if not scored or not all(0 <= j < num_joints for j in scored):
        raise ValueError(f"pck_joints must be indices in 0..{num_joints - 1}, got {scored}")
    pck_poses = target if pck_target is None else np.asarray(pck_target, np.float64)
    if pck_poses.shape != target.shape:
        raise ValueError(f"pck_target shape {pck_poses.shape} != target shape {target.shape}")
    pck_weights = np.zeros(predicted.shape[:-1])  # (N, J): 1 on the scored joints
    pck_weights[:, list(scored)] = 1.0
    if average_over is None:
        mpjpe_avg, p_mpjpe_avg = float(err.mean()), float(p_err.mean())
    else:
        if average_over not in (labels or {}):
            raise ValueError(f"average_over={average_over!r} needs that label; labels are {sorted(labels or {})}")
        groups = labels[average_over]  # type: ignore[index]
        mpjpe_avg = aggregate_by_label(sample_err, groups)["_average"]
        p_mpjpe_avg = aggregate_by_label(p_err.mean(1), groups)["_average"]
    result: dict[str, Any] = {
        "num_samples": int(predicted.shape[0]),
        "mpjpe_mm": 1000 * mpjpe_avg,
        "p_mpjpe_mm": 1000 * p_mpjpe_avg,
        "n_mpjpe_mm": 1000 * float(n_mpjpe(predicted, target)),
        "depth_mpjpe_mm": 1000 * float(depth.mean()),
        "pck150": float(pck(predicted, pck_poses, weights=pck_weights, strict=True)),
        "auc": float(auc(predicted, pck_poses, weights=pck_weights, strict=True)),
        "averaged_over": average_over or "sample",
        "mpjpe_mm_per_sample": 1000 * float(err.mean()),
        "p_mpjpe_mm_per_sample": 1000 * float(p_err.mean()),
        "pck_joints": [joint_names[j] for j in scored],
        "per_joint_mm": {n: 1000 * float(v) for n, v in zip(joint_names, err.mean(0), strict=True)},
        "per_joint_depth_mm": {n: 1000 * float(v) for n, v in zip(joint_names, depth.mean(0), strict=True)},
    }
    per_label: dict[str, dict[str, dict[str, float]]] = {}
    for key, values in (labels or {}).items():
        if key == "name":  # one entry per clip is too fine for a report
            continue
        groups: dict[str, dict[str, float]] = {}
        for value in sorted(set(values.tolist())):
            mask = values == value
            groups[value] = {
                "num_samples": int(mask.sum()),
                "mpjpe_mm": 1000 * float(sample_err[mask].mean()),
                "depth_mpjpe_mm": 1000 * float(sample_depth[mask].mean()),
            }
        per_label[key] = groups
    result["per_label"] = per_label
    azimuth = viewpoint_azimuth_deg(target)
    bins = []
    for lo in range(-180, 180, AZIMUTH_BIN_DEG):
        mask = (azimuth >= lo) & (azimuth < lo + AZIMUTH_BIN_DEG)
        if mask.any():
            bins.append({"azimuth_deg": lo + AZIMUTH_BIN_DEG / 2, "num_samples": int(mask.sum()),
                         "mpjpe_mm": 1000 * float(sample_err[mask].mean()),
                         "depth_mpjpe_mm": 1000 * float(sample_depth[mask].mean())})
    result["by_azimuth"] = bins
    return result


def evaluate_model(
    model: torch.nn.Module, eval_set: EvalSet, batch_size: int = 128, output: Output = "refined",
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Any], np.ndarray]:
    """Predict and score: (metrics dict incl. ``inference_ms_per_sample`` and ``dataset``, predictions)."""
    predicted, ms = predict(_unwrap(model), eval_set, batch_size, output, device)
    pck_target = None if eval_set.pck_target is None else eval_set.extras[eval_set.pck_target]
    metrics = compute_metrics(predicted, eval_set.joints_3d, eval_set.labels, average_over=eval_set.average_over,
                              pck_target=pck_target, pck_joints=eval_set.pck_joints)
    metrics["inference_ms_per_sample"] = ms
    metrics["dataset"] = eval_set.name
    metrics["output"] = output
    return metrics, predicted


def latency_ms(model: torch.nn.Module, eval_set: EvalSet, repeats: int = 30) -> float:
    """Median batch-1 torch-eager latency (ms) on the first sample (a rough per-row cost for tables)."""
    model = _unwrap(model).eval()
    feeds = {k: torch.from_numpy(eval_set.inputs[k][:1]) for k in INPUT_NAMES}
    times = []
    with torch.no_grad():
        for i in range(repeats + 5):
            t0 = time.perf_counter()
            model(**feeds)
            if i >= 5:
                times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))

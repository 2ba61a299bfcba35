"""Pose metrics on numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lbi_ros import metrics as m
from lbi_ros.geometry import rotation_matrix


@pytest.fixture
def poses() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.3, (8, 17, 3))
    pred = target + rng.normal(0, 0.03, target.shape)
    return pred, target


@pytest.mark.parametrize("use_torch", [False, True])
def test_zero_error_for_identical_poses(poses: tuple[np.ndarray, np.ndarray], use_torch: bool) -> None:
    x = torch.tensor(poses[1]) if use_torch else poses[1]
    for fn in (m.mpjpe, m.p_mpjpe, m.n_mpjpe):
        assert float(fn(x, x)) == pytest.approx(0.0, abs=1e-9)
    assert float(m.pck(x, x)) == 100.0 and float(m.auc(x, x)) == pytest.approx(100.0)  # err <= threshold


def test_known_values_reductions_and_weights() -> None:
    target = np.zeros((2, 17, 3))
    pred = target.copy()
    pred[..., 0] = 0.1  # every joint 100 mm off
    pred[0, 3, 0] = 0.4  # one joint 400 mm off
    assert m.mpjpe(pred, target, reduction="none").shape == (2, 17)
    per_joint = m.mpjpe(pred, target, reduction="per_joint")
    assert per_joint.shape == (17,) and per_joint[3] == pytest.approx(0.25)
    w = np.ones((2, 17))
    w[0, 3] = 0
    assert m.mpjpe(pred, target, weights=w) == pytest.approx(0.1)
    assert m.pck(pred, target) == pytest.approx(100 * 33 / 34)
    # root alignment removes a global offset
    assert m.mpjpe(pred + 5.0, pred, root_index=0) == pytest.approx(0.0)


@pytest.mark.parametrize("use_torch", [False, True])
def test_p_mpjpe_invariant_to_similarity(poses: tuple[np.ndarray, np.ndarray], use_torch: bool) -> None:
    pred, target = poses
    rot = rotation_matrix("x", 0.9) @ rotation_matrix("z", 2.1)
    moved = 2.5 * pred @ rot.T + np.array([1.0, -2.0, 0.5])
    if use_torch:
        pred, moved, target = (torch.tensor(a) for a in (pred, moved, target))
    assert float(m.p_mpjpe(moved, target)) == pytest.approx(float(m.p_mpjpe(pred, target)), rel=1e-9)
    assert float(m.p_mpjpe(pred, target)) <= float(m.mpjpe(pred, target))


def test_n_mpjpe_scale_invariant(poses: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = poses
    assert m.n_mpjpe(3.0 * pred, target) == pytest.approx(m.n_mpjpe(pred, target))


def test_mpjve() -> None:
    rng = np.random.default_rng(1)
    seq = rng.normal(size=(10, 17, 3))
    assert m.mpjve(seq + 1.0, seq) == pytest.approx(0.0)
    ramp = seq + np.arange(10)[:, None, None] * np.array([0.01, 0.0, 0.0])
    assert m.mpjve(ramp, seq) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="2 frames"):
        m.mpjve(seq[:1], seq[:1])


def test_pck_auc_thresholds() -> None:
    assert len(m.AUC_THRESHOLDS_M) == 31 and m.AUC_THRESHOLDS_M[-1] == pytest.approx(0.15)
    target = np.zeros((1, 17, 3))
    far = target + np.array([0.2, 0.0, 0.0])
    assert m.pck(far, target) == 0.0 and m.auc(far, target) == 0.0
    near = target + np.array([0.0725, 0.0, 0.0])  # within 75..150 mm thresholds: 16 of 31
    assert m.auc(near, target) == pytest.approx(100 * 16 / 31)
    assert float(m.auc(torch.tensor(near), torch.tensor(target))) == pytest.approx(100 * 16 / 31)
    # strict (the MPI-INF-3DHP tool's error < t): a tie at a threshold is a miss, so PCK at 0 mm is 0
    on_edge = target + np.array([0.15, 0.0, 0.0])
    assert m.pck(on_edge, target) == 100.0 and m.pck(on_edge, target, strict=True) == 0.0
    assert m.auc(target, target, strict=True) == pytest.approx(100 * 30 / 31)
    assert float(m.auc(torch.tensor(target), torch.tensor(target), strict=True)) == pytest.approx(100 * 30 / 31)


def test_shape_and_type_errors() -> None:
    with pytest.raises(ValueError, match=r"predicted shape \(2, 17, 3\) != target shape \(2, 16, 3\)"):
        m.mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        m.mpjpe(np.zeros((2, 17, 2)), np.zeros((2, 17, 2)))
    with pytest.raises(TypeError, match="both"):
        m.mpjpe(np.zeros((1, 17, 3)), torch.zeros(1, 17, 3))
    with pytest.raises(ValueError, match="weights shape"):
        m.mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)), weights=np.ones(17))
    with pytest.raises(ValueError, match="reduction"):
        m.mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)), reduction="sum")  # type: ignore[arg-type]


def test_aggregate_by_label_and_summary(poses: tuple[np.ndarray, np.ndarray]) -> None:
    agg = m.aggregate_by_label(np.array([1.0, 3.0, 10.0]), ["walk", "walk", "sit"])
    assert agg == {"sit": 10.0, "walk": 2.0, "_average": 6.0}
    summary = m.evaluate_batch(*poses, joint_names=[f"j{i}" for i in range(17)])
    assert summary["mpjpe_mm"] > summary["p_mpjpe_mm"] > 0 and "mpjpe_mm/j3" in summary

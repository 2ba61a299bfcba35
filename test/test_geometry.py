"""Projection, frames, Procrustes and metric root recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lbi_ros import geometry as g

K = g.Intrinsics(fx=900.0, fy=910.0, cx=640.0, cy=360.0)


def _poses(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random root-relative skeletons (n, 17, 3) of human size and camera-frame roots (n, 3)."""
    rel = rng.normal(0, 0.25, (n, 17, 3))
    rel[:, 0] = 0
    root = np.stack([rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n), rng.uniform(2.5, 7, n)], 1)
    return rel, root


def test_intrinsics_validation_and_matrix() -> None:
    assert np.allclose(g.Intrinsics.from_matrix(K.matrix()).as_array(), K.as_array())
    with pytest.raises(ValueError, match="positive"):
        g.Intrinsics(0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        g.Intrinsics(float("nan"), 1.0, 0.0, 0.0)
    fov = g.Intrinsics.from_fov(640, 480, 90.0)
    assert np.isclose(fov.fx, 320.0) and np.isclose(fov.cx, 319.5)


def test_projection_round_trip_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-2, 2, 50), rng.uniform(-1, 1, 50), rng.uniform(0.5, 10, 50)], 1)
    px = g.project(pts, K)
    back = g.unproject(px, pts[:, 2], K)
    assert np.allclose(back, pts)
    k_arr = np.tile(K.as_array(), (50, 1))  # one camera per leading index: (50, 4) for points (50, 1, 3)
    assert np.allclose(g.project(pts[:, None], k_arr)[:, 0], px)
    tp = g.project(torch.tensor(pts), K)
    assert isinstance(tp, torch.Tensor) and np.allclose(tp.numpy(), px)
    rays = g.pixels_to_camera_rays(px, K)
    assert np.allclose(rays, pts[:, :2] / pts[:, 2:])
    assert np.isnan(g.project(np.array([[0.0, 0.0, -1.0]]), K)).all()  # behind the camera


def test_world_camera_and_root_relative_round_trips() -> None:
    rng = np.random.default_rng(1)
    rot = g.rotation_matrix("z", 0.3) @ g.rotation_matrix("x", -1.2)
    t = rng.normal(size=3)
    pw = rng.normal(size=(17, 3))
    pc = g.world_to_camera(pw, rot, t)
    assert np.allclose(pc, pw @ rot.T + t)
    assert np.allclose(g.camera_to_world(pc, rot, t), pw)
    rel, root = g.to_root_relative(pc)
    assert np.allclose(rel[0], 0) and np.allclose(g.from_root_relative(rel, root), pc)
    q = np.array([np.cos(0.4), 0.0, 0.0, np.sin(0.4)])  # 0.8 rad about z
    assert np.allclose(g.quaternion_to_matrix(q), g.rotation_matrix("z", 0.8))


def test_screen_normalisation_round_trip() -> None:
    px = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    n = g.normalize_screen_coordinates(px, 1000, 1002)
    assert np.allclose(n[0], [-1.0, -1.002]) and np.allclose(n[1, 0], 1.0)
    assert np.allclose(g.image_coordinates(n, 1000, 1002), px)


@pytest.mark.parametrize("use_torch", [False, True])
def test_procrustes_recovers_similarity(use_torch: bool) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 17, 3))
    rot = g.rotation_matrix("y", 0.7) @ g.rotation_matrix("z", -0.4)
    y = 1.7 * x @ rot.T + np.array([0.3, -1.0, 2.0])
    a, b = (torch.tensor(x), torch.tensor(y)) if use_torch else (x, y)
    aligned, s, r, t = g.procrustes_align(a, b, return_transform=True)
    aligned = np.asarray(aligned)
    assert np.allclose(aligned, y, atol=1e-9)
    assert np.allclose(np.asarray(s), 1.7) and np.allclose(np.asarray(r), rot)
    # a mirror image is not explained by a proper rotation
    mirrored = x * np.array([-1.0, 1.0, 1.0])
    assert np.linalg.det(g.procrustes_align(mirrored, x, return_transform=True)[2]).min() > 0


def test_root_recovery_noiseless_batched_sub_millimetre() -> None:
    rng = np.random.default_rng(3)
    rel, root = _poses(rng, 64)
    px = g.project(rel + root[:, None], K)
    sol = g.solve_root_translation(rel, px, np.ones((64, 17)), K)
    assert sol.valid.all()
    assert np.abs(sol.translation - root).max() < 1e-3
    assert sol.reprojection_error_px.max() < 1e-6
    # per-sample intrinsics array (batched cameras)
    sol2 = g.solve_root_translation(rel, px, np.ones((64, 17)), np.tile(K.as_array(), (64, 1)))
    assert np.abs(sol2.translation - root).max() < 1e-3


def test_root_recovery_missing_joints_and_underdetermined() -> None:
    rng = np.random.default_rng(4)
    rel, root = _poses(rng, 3)
    px = g.project(rel + root[:, None], K)
    w = np.ones((3, 17))
    w[0, 3:] = 0.0  # 3 joints: still determined
    w[1, 1:] = 0.0  # 1 joint: underdetermined
    w[2] = 0.0  # nothing
    px[0, 5] = np.nan  # garbage on a zero-weight joint is ignored
    sol = g.solve_root_translation(rel, px, w, K)
    assert sol.valid.tolist() == [True, False, False]
    assert np.abs(sol.translation[0] - root[0]).max() < 1e-3
    assert np.isnan(sol.translation[1:]).all() and np.isnan(sol.reprojection_error_px[1:]).all()
    assert sol.num_joints.tolist() == [3, 1, 0]


def test_root_recovery_degrades_gracefully_with_noise() -> None:
    rng = np.random.default_rng(5)
    rel, root = _poses(rng, 200)
    px = g.project(rel + root[:, None], K)
    errors = []
    for sigma in (0.5, 2.0, 8.0):
        noisy = px + rng.normal(0, sigma, px.shape)
        sol = g.solve_root_translation(rel, noisy, np.ones((200, 17)), K)
        assert sol.valid.all()
        errors.append(np.median(np.linalg.norm(sol.translation - root, axis=-1)))
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] < 0.02 and errors[2] < 0.3  # metres: ~1 cm at 0.5 px, bounded at 8 px


def test_root_recovery_torch_matches_numpy() -> None:
    rng = np.random.default_rng(6)
    rel, root = _poses(rng, 8)
    px = g.project(rel + root[:, None], K) + rng.normal(0, 1.0, (8, 17, 2))
    w = rng.uniform(0.2, 1.0, (8, 17))
    a = g.solve_root_translation(rel, px, w, K)
    b = g.solve_root_translation(torch.tensor(rel), torch.tensor(px), torch.tensor(w), K)
    assert np.allclose(a.translation, b.translation.numpy(), atol=1e-9)
    assert b.valid.dtype == torch.bool


def test_root_recovery_shape_errors() -> None:
    with pytest.raises(ValueError, match="disagree"):
        g.solve_root_translation(np.zeros((17, 3)), np.zeros((16, 2)), np.ones(17), K)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        g.project(np.ones((2, 3)), np.ones(3))


def test_root_recovery_keeps_inconsistent_poses_in_front() -> None:
    """A 3D pose that does not match the 2D (e.g. an untrained lifter) is still placed in front."""
    rng = np.random.default_rng(7)
    rel, root = _poses(rng, 32)
    px = g.project(rel + root[:, None], K)
    wrong = rng.normal(0, 0.7, (32, 17, 3))
    wrong[:, 0] = 0
    sol = g.solve_root_translation(wrong, px, np.ones((32, 17)), K)
    assert sol.valid.all()
    assert (wrong[..., 2] + sol.translation[:, None, 2] > 0.04).all()
    assert np.isfinite(sol.reprojection_error_px).all()


def test_root_recovery_rejects_a_point_sized_pose():
    """A zero-size pose fits any 2D keypoints at any depth: no translation may be claimed for it."""
    from lbi_ros.geometry import Intrinsics, solve_root_translation

    kp = np.random.default_rng(0).uniform(200, 400, (17, 2))
    solution = solve_root_translation(np.zeros((17, 3)), kp, np.ones(17), Intrinsics(500, 500, 320, 240))
    assert not bool(solution.valid) and np.all(np.isnan(solution.translation))

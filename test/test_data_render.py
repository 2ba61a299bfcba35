"""Renderer, cameras, 2D noise and the synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.cli.main import main as lbi_main
from lbi_ros.geometry import Intrinsics, project
from lbi_ros.mocap.poses import random_pose
from lbi_ros.preprocess import compute_crop_box
from lbi_ros.render.capsule.body_model import NO_HIT, RenderConfig, body_points, sample_appearance
from lbi_ros.render.capsule.renderer import PersonRenderer, render_people
from lbi_ros.skeleton import H36M17
from lbi_ros.synth.cameras import CameraSamplerConfig, look_at_rotation, sample_camera
from lbi_ros.synth.dataset import (
    BoneAugmentConfig,
    SyntheticDataConfig,
    SyntheticPoseDataset,
    mirror_pose,
    retarget_bones,
)
from lbi_ros.synth.noise2d import Noise2DConfig, apply_detector_noise

SMALL_BANK = RenderConfig(bank_size=4, bank_resolution=128)


@pytest.fixture(scope="module")
def renderer() -> PersonRenderer:
    return PersonRenderer(SMALL_BANK)


@pytest.fixture(scope="module")
def dataset() -> SyntheticPoseDataset:
    return SyntheticPoseDataset(SyntheticDataConfig(samples_per_epoch=64, render=SMALL_BANK))


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, Intrinsics]:
    """A procedural person 3.5 m in front of a camera, as camera-frame joints/toes + crop intrinsics."""
    rng = np.random.default_rng(seed)
    joints, toes = random_pose(rng)
    eye = joints[0] + np.array([3.5, 0.0, 0.0])
    eye[2] = 1.2
    rot = look_at_rotation(eye, joints[0])
    jc, tc = (joints - eye) @ rot.T, (toes - eye) @ rot.T
    k = Intrinsics(600.0, 600.0, 320.0, 240.0)
    kp = np.concatenate([project(jc, k), np.ones((17, 1))], 1)
    box = compute_crop_box(kp)
    return jc, tc, box.crop_intrinsics(k, 128, 96)


def test_renderer_is_deterministic_for_a_seed(renderer: PersonRenderer) -> None:
    jc, tc, k = _scene()
    a = renderer.render(jc, k, 128, 96, np.random.default_rng(7), toes_cam=tc)
    b = renderer.render(jc, k, 128, 96, np.random.default_rng(7), toes_cam=tc)
    c = renderer.render(jc, k, 128, 96, np.random.default_rng(8), toes_cam=tc)
    assert a.shape == (128, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # the bank itself is a function of its seed
    assert np.array_equal(PersonRenderer(SMALL_BANK).bank.images["clutter"][1], renderer.bank.images["clutter"][1])


def test_body_covers_its_joints_and_is_shaded(renderer: PersonRenderer) -> None:
    jc, tc, k = _scene(1)
    app = sample_appearance(np.random.default_rng(0), SMALL_BANK)
    ids, shade = renderer._rasterize(body_points(jc, tc), k, 128, 96, app)
    px = np.round(project(jc, k)).astype(int)
    inside = (px[:, 0] >= 0) & (px[:, 0] < 96) & (px[:, 1] >= 0) & (px[:, 1] < 128)
    hits = ids[px[inside, 1], px[inside, 0]] != NO_HIT
    assert hits.mean() > 0.9  # joints lie on the body
    body = ids != NO_HIT
    assert 0.1 < body.mean() < 0.9  # a person, not a blank or a full frame
    assert shade[body].std() > 0.02 and shade[body].min() >= app.ambient - 1e-6  # Lambert shading varies


def test_valid_region_and_low_resolution(renderer: PersonRenderer) -> None:
    jc, tc, k = _scene(2)
    img = renderer.render(jc, k, 128, 96, np.random.default_rng(0), toes_cam=tc, valid_region=(20.0, -5.0, 200.0, 200.0))
    assert np.all(img[:, :20] == 0) and img[:, 21:].any()
    low = renderer.render(jc, k, 128, 96, np.random.default_rng(0), toes_cam=tc, resolution_scale=0.4)
    assert low.shape == (128, 96, 3)


def test_full_frame_with_several_people(renderer: PersonRenderer) -> None:
    jc, tc, _ = _scene(3)
    k = Intrinsics(600.0, 600.0, 320.0, 240.0)
    near = jc + np.array([-0.3, 0.0, -1.0])  # same pose, 1 m closer, shifted left
    joints, toes = np.stack([jc, near]), np.stack([tc, tc + np.array([-0.3, 0.0, -1.0])])
    a = render_people(renderer, joints, toes, k, 640, 480, np.random.default_rng(0))
    b = render_people(renderer, joints, toes, k, 640, 480, np.random.default_rng(1))
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    diff = np.abs(a.astype(int) - b)
    assert diff.mean() < renderer.config.sensor_noise_max and np.median(diff) <= 6  # same look, new noise
    from lbi_ros.render.capsule.body_model import PALETTE_ROWS
    from lbi_ros.render.capsule.renderer import rasterize_people

    apps = [sample_appearance(np.random.default_rng(i), SMALL_BANK) for i in range(2)]
    ids, _ = rasterize_people([body_points(jc, tc), body_points(near, toes[1])], apps, k, 480, 640)
    px = np.round(project(near[[0, 8]], k)).astype(int)  # the nearer person's pelvis and thorax
    assert np.all(ids[px[:, 1], px[:, 0]] // PALETTE_ROWS == 1)  # visible in front
    assert set(np.unique(ids[ids != NO_HIT]) // PALETTE_ROWS) == {0, 1}


def test_camera_sampler_frames_the_target() -> None:
    cfg = CameraSamplerConfig()
    rng = np.random.default_rng(0)
    target = np.array([1.0, -2.0, 0.9])
    for _ in range(50):
        cam = sample_camera(rng, target, cfg)
        assert np.allclose(cam.rotation @ cam.rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(cam.rotation) == pytest.approx(1.0)
        p = cam.world_to_camera(target[None])[0]
        assert p[2] > 0
        u, v = project(p[None], cam.intrinsics)[0]
        assert -0.1 * cam.width < u < 1.1 * cam.width and -0.1 * cam.height < v < 1.1 * cam.height
        assert cfg.height_m[0] <= cam.position[2] <= cfg.height_m[1]
        horiz = np.linalg.norm(cam.position[:2] - target[:2])
        assert cfg.distance_m[0] - 1e-9 <= horiz <= cfg.distance_m[1] + 1e-9


def test_detector_noise_model() -> None:
    rng = np.random.default_rng(0)
    gt = np.stack([np.linspace(100, 200, 17), np.linspace(50, 400, 17)], 1)
    kp = apply_detector_noise(gt, rng, Noise2DConfig(dropout_prob=0.3))
    assert kp.shape == (17, 3) and kp.dtype == np.float32
    missing = kp[:, 2] == 0
    assert np.all(kp[missing, :2] == 0)
    vis = ~missing
    assert np.all((kp[vis, 2] >= 0.1) & (kp[vis, 2] <= 1.0))
    # synthesized pelvis = mid-hips of the *noisy* hips, confidence = min
    kp = apply_detector_noise(gt, np.random.default_rng(1), Noise2DConfig(dropout_prob=0.0))
    assert np.allclose(kp[0, :2], kp[[1, 4], :2].mean(0)) and kp[0, 2] == kp[[1, 4], 2].min()
    # joints outside the image are (almost always) dropped
    far = gt + np.array([5000.0, 0.0])
    kp = apply_detector_noise(far, np.random.default_rng(2), Noise2DConfig(outside_drop_prob=1.0), (640, 480))
    assert np.all(kp[:, 2] == 0)
    clean = apply_detector_noise(gt, np.random.default_rng(3), Noise2DConfig(sigma_range=(0.0, 0.0), outlier_prob=0,
                                                                             swap_prob=0, dropout_prob=0, synthesize="none"))
    assert np.allclose(clean[:, :2], gt, atol=1e-4)


def test_bone_retargeting_and_mirror() -> None:
    rng = np.random.default_rng(0)
    joints, toes = random_pose(rng)
    cfg = BoneAugmentConfig(hip_width_m=(0.25, 0.25), shoulder_width_m=(0.33, 0.33))
    new, new_toes = retarget_bones(joints, toes, rng, cfg)
    assert np.linalg.norm(new[4] - new[1]) == pytest.approx(0.25)
    assert np.linalg.norm(new[11] - new[14]) == pytest.approx(0.33)
    assert np.allclose(new[0, :2], joints[0, :2])
    m, mt = mirror_pose(joints, toes)
    assert np.allclose(m[H36M17.index("l_wrist")], joints[H36M17.index("r_wrist")] * [1, -1, 1])
    assert np.allclose(mt[0], toes[1] * [1, -1, 1])


def test_dataset_sample_contract_and_determinism(dataset: SyntheticPoseDataset) -> None:
    s = dataset[3]
    shapes = {
        "image_crop": (3, 128, 96), "keypoints_crop": (17, 3), "keypoints_cam": (17, 2), "crop_cam": (4,),
        "joints_3d": (17, 3), "root_cam": (3,), "keypoints_px": (17, 3), "keypoints_gt_px": (17, 2),
        "intrinsics": (4,), "box": (4,), "image_size": (2,),
    }  # fmt: skip
    assert {k: v.shape for k, v in s.items()} == shapes
    assert all(v.dtype == np.float32 for v in s.values())
    assert np.allclose(s["joints_3d"][0], 0)
    k = Intrinsics(*s["intrinsics"].tolist())
    reproj = project(s["joints_3d"] + s["root_cam"], k)
    assert np.allclose(reproj, s["keypoints_gt_px"], atol=1e-2)
    vis = s["keypoints_px"][:, 2] > 0
    assert vis.sum() >= dataset.config.min_visible_joints
    expect_cam = (s["keypoints_px"][:, :2] - s["intrinsics"][2:]) / s["intrinsics"][:2]
    assert np.allclose(s["keypoints_cam"][vis], expect_cam[vis], atol=1e-5)
    t = dataset[3]
    assert all(np.array_equal(s[k], t[k]) for k in s)
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[3]["joints_3d"], s["joints_3d"])
    dataset.set_epoch(0)
    with pytest.raises(IndexError):
        dataset[64]


def test_dataset_is_picklable_for_workers(dataset: SyntheticPoseDataset) -> None:
    import pickle

    _ = dataset.renderer
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._renderer is None and np.array_equal(clone[5]["image_crop"], dataset[5]["image_crop"])


def test_preview_and_bench_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    sheet = tmp_path / "sheet.png"
    assert lbi_main(["data", "preview", "--out", str(sheet)]) == 0
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape == (4 * 256, 4 * 192, 3)
    out = tmp_path / "bench.json"
    assert lbi_main(["bench", "render", "--samples", "20", "--warmup", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["crops_per_s_per_core"] > 0 and result["crop"] == [128, 96]
    assert "crops/s per core" in capsys.readouterr().out


def test_shipped_data_config_matches_the_defaults() -> None:
    from lbi_ros.config import load_yaml

    path = Path(__file__).resolve().parents[1] / "config" / "data" / "synthetic.yaml"
    assert load_yaml(SyntheticDataConfig, path) == SyntheticDataConfig()

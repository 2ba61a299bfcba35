"""Issue 17 / 16: evaluation on the built-in detector's 2D, the fitted noise config, the BlazePose world peer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.checkpoint import save_checkpoint
from lbi_ros.cli.main import main as cli_main
from lbi_ros.config import load_yaml
from lbi_ros.evaluation import evaluate_model, rendered_eval_set
from lbi_ros.evaluation.detector_input import DetectorRenderSet, PersonMissed, detector_eval_set
from lbi_ros.evaluation.peer import (
    apply_joint_offsets,
    body_frames,
    fit_joint_offsets,
    plausibility,
    ray_rotation,
    world_to_h36m,
)
from lbi_ros.model import build_model
from lbi_ros.model.config import ModelConfig
from lbi_ros.skeleton import H36M17, MEDIAPIPE33, STANDING_POSE_M
from lbi_ros.synth.dataset import SyntheticDataConfig
from lbi_ros.synth.noise2d import JOINT_NOISE_FACTORS, Noise2DConfig, apply_detector_noise
from lbi_ros.synth.noise_fit import fit_noise_config, measure_errors

from .conftest import require_pose_models
from .test_evaluation import write_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pose_models() -> None:
    require_pose_models()


# ---------------------------------------------------------------------------------------------------------
# 17.1: --keypoints detector
# ---------------------------------------------------------------------------------------------------------


def test_missed_people_are_left_out_and_counted_never_scored(tmp_path: Path, monkeypatch) -> None:
    """A stand-in detector that misses every third person and otherwise returns the synthetic 2D: the found
    samples are exactly those rows of the synthetic set, the misses are counted, and a lifter is scored on
    the found people only."""
    cache = write_cache(tmp_path / "cache")
    calls = []

    def observe(self, keypoints_px, cam, joints_cam, toes_cam, people, rng):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) % 3 == 1:
            raise PersonMissed("stand-in miss")
        self.last_observation = {"world_landmarks": np.zeros((33, 3), np.float32),
                                 "roi_center_px": np.zeros(2, np.float32),
                                 "detector_score": np.ones(1, np.float32)}
        return keypoints_px

    monkeypatch.setattr(DetectorRenderSet, "observe_keypoints", observe)
    detected = detector_eval_set(str(cache), "test", 7, seed=3, detector=object())  # type: ignore[arg-type]
    synthetic = rendered_eval_set(str(cache), "test", 7, seed=3)
    np.testing.assert_array_equal(detected.missed_index, [0, 3, 6])
    np.testing.assert_array_equal(detected.sample_index, [1, 2, 4, 5])
    assert detected.summary() == {"keypoints": "detector", "num_rendered": 7, "num_detected": 4, "num_missed": 3,
                                  "detection_rate": pytest.approx(400 / 7)}
    es = detected.eval_set
    for key in es.inputs:
        np.testing.assert_array_equal(es.inputs[key], synthetic.inputs[key][detected.sample_index])
    np.testing.assert_array_equal(es.labels["style"], synthetic.labels["style"][detected.sample_index])
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    metrics, predicted = evaluate_model(build_model(config), es)
    assert metrics["num_samples"] == 4 and predicted.shape == (4, 17, 3)


def test_detector_keypoints_on_rendered_samples(tmp_path: Path, pose_models: None) -> None:
    cache = write_cache(tmp_path / "cache")
    detected = detector_eval_set(str(cache), "test", 6, seed=2024)
    es = detected.eval_set
    assert detected.num_total == 6 and len(es) == detected.sample_index.size >= 1
    synthetic = rendered_eval_set(str(cache), "test", 6, seed=2024)
    rows = detected.sample_index
    np.testing.assert_array_equal(es.joints_3d, synthetic.joints_3d[rows])  # same people
    assert not np.allclose(es.extras["keypoints_px"], synthetic.extras["keypoints_px"][rows])  # other 2D
    kp, gt = es.extras["keypoints_px"], es.extras["keypoints_gt_px"]
    seen = kp[..., 2] > 0.05
    height = es.extras["box"][:, 3]  # px; the box is 1.25 x the person
    assert np.median(np.linalg.norm(kp[..., :2] - gt, axis=-1)[seen] / np.repeat(height, 17)[seen.ravel()]) < 0.25  # same person
    assert es.extras["world_landmarks"].shape == (len(es), 33, 3)


def test_eval_cli_detector_keypoints_and_peer(tmp_path: Path, pose_models: None) -> None:
    cache = write_cache(tmp_path / "cache")
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    out = tmp_path / "m.json"
    args = ["--data", str(cache), "--num-samples", "6", "--seed", "2024", "--latency-repeats", "0"]
    assert cli_main(["eval", str(ckpt), *args, "--keypoints", "detector", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["keypoints"] == "detector" and metrics["num_rendered"] == 6
    assert metrics["num_samples"] == metrics["num_detected"] == 6 - metrics["num_missed"]
    assert metrics["detection_rate"] == pytest.approx(100 * metrics["num_detected"] / 6)
    peer = tmp_path / "peer.json"
    assert cli_main(["eval", "blazepose-world", *args, "--json", str(peer)]) == 0
    result = json.loads(peer.read_text())
    assert result["num_detected"] == metrics["num_detected"]  # the same people
    for key in ("mpjpe_mm", "p_mpjpe_mm", "depth_mpjpe_mm", "pck150"):
        assert np.isfinite(result[key])
    assert result["p_mpjpe_mm"] < 400


def test_gated_lifter_gets_the_square_crop_of_the_detected_people(tmp_path: Path, pose_models: None) -> None:
    """``lbi eval <gated> --keypoints detector``: the same found people, 2D and targets as for the box-crop
    lifters; only ``image_crop`` is the shared 256x256 square, drawn as the gated training pool draws it."""
    from lbi_ros.training.square_crops import square_detector_eval_set

    cache = write_cache(tmp_path / "cache")
    plain = detector_eval_set(str(cache), "test", 4, seed=2024)
    square = square_detector_eval_set(str(cache), "test", 4, seed=2024)
    np.testing.assert_array_equal(square.sample_index, plain.sample_index)
    a, b = plain.eval_set, square.eval_set
    for key in ("keypoints_crop", "keypoints_cam", "crop_cam"):
        np.testing.assert_array_equal(b.inputs[key], a.inputs[key])
    np.testing.assert_array_equal(b.joints_3d, a.joints_3d)
    assert a.inputs["image_crop"].shape[1:] == (3, 128, 96) and b.inputs["image_crop"].shape[1:] == (3, 256, 256)
    assert float(np.abs(b.inputs["image_crop"]).mean()) > 0.1  # a drawn person, not the black placeholder


# ---------------------------------------------------------------------------------------------------------
# 17.2: noise model fitted to the detector
# ---------------------------------------------------------------------------------------------------------


def test_new_noise_fields_keep_todays_draws() -> None:
    """Defaults draw exactly what the model drew before gross failures and per-joint factors existed."""
    gt = STANDING_POSE_M[:, :2] * 300 + 320
    explicit = Noise2DConfig(joint_factors=tuple(JOINT_NOISE_FACTORS.tolist()), gross_failure_prob=0.0)
    a_rng, b_rng = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):
        np.testing.assert_array_equal(apply_detector_noise(gt, a_rng), apply_detector_noise(gt, b_rng, explicit))
    assert a_rng.random() == b_rng.random()
    with pytest.raises(ValueError, match="joint_factors"):
        Noise2DConfig(joint_factors=(1.0, 2.0))


def test_noise_fit_recovers_known_noise() -> None:
    """Keypoints drawn by the noise model with known parameters -> measure -> fit gives them back."""
    truth = Noise2DConfig(sigma_range=(0.01, 0.03), outlier_prob=0.04, outlier_scale=0.2, swap_prob=0.1,
                          dropout_prob=0.03, gross_failure_prob=0.1, gross_failure_scale=0.3)
    rng = np.random.default_rng(0)
    gt = np.stack([STANDING_POSE_M[:, :2] * rng.uniform(200, 400) + rng.uniform(200, 400, 2) for _ in range(3000)])
    det = np.stack([apply_detector_noise(g, rng, truth) for g in gt])
    stats = measure_errors(det, gt, np.tile([1280.0, 960.0], (len(gt), 1)), num_missed=1000)
    assert stats.miss_rate == pytest.approx(0.25)
    fitted = fit_noise_config(stats)
    mean = sum(fitted.sigma_range) / 2 * np.mean(fitted.joint_factors)
    assert mean == pytest.approx(0.02 * JOINT_NOISE_FACTORS.mean(), rel=0.2)
    assert fitted.swap_prob == pytest.approx(0.1, abs=0.03)
    assert fitted.gross_failure_prob == pytest.approx(0.1, abs=0.03)
    assert fitted.dropout_prob == pytest.approx(0.03, abs=0.01)
    assert fitted.outlier_prob == pytest.approx(0.04, abs=0.02)
    ratio = np.asarray(fitted.joint_factors)[[3, 13]] / np.asarray(fitted.joint_factors)[[1, 11]]
    np.testing.assert_allclose(ratio, JOINT_NOISE_FACTORS[[3, 13]] / JOINT_NOISE_FACTORS[[1, 11]], rtol=0.2)


def test_fitted_noise_config_loads() -> None:
    path = REPO / "config" / "data" / "detector_noise.yaml"
    data = load_yaml(SyntheticDataConfig, path)
    assert "lbi bench detector-noise" in path.read_text() and "--split train" in path.read_text()
    noise = data.noise
    assert noise != Noise2DConfig() and len(noise.joint_factors) == 17
    assert noise.gross_failure_prob > 0 and noise.swap_prob > 0
    assert sum(noise.sigma_range) / 2 > sum(Noise2DConfig().sigma_range) / 2  # the detector is sloppier
    assert replace(data, noise=Noise2DConfig()) == replace(SyntheticDataConfig(), mesh=data.mesh)  # only noise


# ---------------------------------------------------------------------------------------------------------
# 16: the BlazePose world-landmark peer
# ---------------------------------------------------------------------------------------------------------


def _mediapipe_from_h36m(pose: np.ndarray) -> np.ndarray:
    """Constructed MediaPipe-33 world landmarks for an H36M pose: limbs copied, a face around the nose."""
    mp = np.zeros((33, 3))
    for name in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
        for side in ("l", "r"):
            mp[MEDIAPIPE33.index(f"{side}_{name}")] = pose[H36M17.index(f"{side}_{name}")]
    nose = np.array([0.0, -0.62, -0.1])
    mp[MEDIAPIPE33.index("nose")] = nose
    for name, dx in (("l_ear", 0.08), ("r_ear", -0.08), ("l_eye", 0.03), ("r_eye", -0.03)):
        mp[MEDIAPIPE33.index(name)] = nose + [dx, -0.02, 0.1]
    return mp


def test_world_landmarks_map_to_h36m_on_constructed_points() -> None:
    pose = STANDING_POSE_M.astype(np.float64) + [0.0, 0.0, 1.0]  # any origin: the output is re-rooted
    mp = _mediapipe_from_h36m(pose)
    out = world_to_h36m(mp[None])[0]
    pelvis = (pose[1] + pose[4]) / 2
    shoulders = (pose[11] + pose[14]) / 2
    np.testing.assert_allclose(out[0], 0.0, atol=1e-12)
    for name in ("l_hip", "r_knee", "l_ankle", "r_shoulder", "l_elbow", "r_wrist"):
        np.testing.assert_allclose(out[H36M17.index(name)], pose[H36M17.index(name)] - pelvis, atol=1e-12)
    np.testing.assert_allclose(out[H36M17.index("thorax")], shoulders - pelvis, atol=1e-12)
    np.testing.assert_allclose(out[H36M17.index("spine")], (shoulders + pelvis) / 2 - pelvis, atol=1e-12)
    ears = (mp[MEDIAPIPE33.index("l_ear")] + mp[MEDIAPIPE33.index("r_ear")]) / 2
    np.testing.assert_allclose(out[H36M17.index("neck_nose")], 0.5 * mp[0] + 0.5 * ears - pelvis, atol=1e-12)
    np.testing.assert_allclose(out[H36M17.index("head")], ears + (2 / 3) * (ears - shoulders) - pelvis, atol=1e-12)


def test_ray_rotation_and_body_frame_offsets() -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1280, (5, 2))
    intr = np.tile([600.0, 600.0, 640.0, 360.0], (5, 1))
    rot = ray_rotation(centres, intr)
    ray = np.concatenate([(centres - intr[:, 2:]) / 600.0, np.ones((5, 1))], 1)
    np.testing.assert_allclose(rot[:, :, 2], ray / np.linalg.norm(ray, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    # A constant offset in each person's frame is measured exactly and removed, whatever the person's rotation.
    offsets = rng.normal(0, 0.03, (17, 3))
    offsets[0] = 0
    poses = []
    for _ in range(50):
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        poses.append(STANDING_POSE_M @ (q * np.sign(np.linalg.det(q))).T)
    predicted = np.asarray(poses)
    frames = body_frames(predicted)
    target = predicted + np.einsum("nck,jk->njc", frames, offsets)
    np.testing.assert_allclose(fit_joint_offsets(predicted, target), offsets, atol=1e-12)
    np.testing.assert_allclose(apply_joint_offsets(predicted, offsets), target, atol=1e-12)


def test_plausibility_checks_on_the_standing_pose() -> None:
    checks = plausibility(STANDING_POSE_M)
    assert checks["shoulder_width_m"] == pytest.approx(0.36)
    assert checks["torso_m"] == pytest.approx(0.5)
    assert checks["l_elbow_above_shoulder_m"] == pytest.approx(-0.28)  # hanging arm: elbow below the shoulder

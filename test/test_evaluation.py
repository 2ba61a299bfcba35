"""Evaluation: known predictions give known metrics; fixed-seed sets; reports; `lbi eval`; shipped weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lbi_ros.checkpoint import load_model, save_checkpoint
from lbi_ros.cli.main import main as cli_main
from lbi_ros.evaluation import compute_metrics, evaluate_model, rendered_eval_set, viewpoint_azimuth_deg
from lbi_ros.evaluation.report import write_report
from lbi_ros.mocap.cache import CACHE_ARRAYS, CACHE_INDEX, CACHE_VERSION
from lbi_ros.mocap.poses import random_pose
from lbi_ros.model import build_model
from lbi_ros.model.config import ModelConfig
from lbi_ros.runtime.io_spec import build_io_spec, example_inputs
from lbi_ros.weights import SHIPPED, default_weights_path

from .conftest import require, require_pose_models

# sha256 of the shipped files; update together with MODEL_CARD.md when the weights are retrained.
SHIPPED_SHA256 = {
    "default": "0f06b37c7168b4aa67f60ef7b29c52733714e35bd081a008f2c93e8c5e41c63f",
    "baseline-2d": "acef9a6329543c561e6400a4d07635602f3b1948d3d361284a42c354e4be1e69",
    "lift2d-base": "523c13de998d4136a8cfe90dc7a042c168e164cf1a19c83325ecf7e05615edf2",
    "lbi-scratch": "99c3868b40e2091d4aed09912efa01ec8182b092b538b2cbfcfa3645b7e7a45e",
}


def write_cache(root: Path, frames_per_clip: int = 5) -> Path:
    """A tiny mocap cache in the `lbi data prepare-mocap` layout, with procedural poses."""
    rng = np.random.default_rng(0)
    clips, joints, toes, start = [], [], [], 0
    for i, (style, split) in enumerate((("normal", "train"), ("old", "test"), ("tired", "test"), ("happy", "val"))):
        for _ in range(frames_per_clip):
            j, t = random_pose(rng)
            joints.append(j)
            toes.append(t)
        clips.append({"name": f"dataset-1_walk_{style}_{i:03d}", "dataset": "dataset-1", "content": "walk",
                      "style": style, "take": i, "split": split, "start": start, "frames": frames_per_clip,
                      "fps": 30.0})
        start += frames_per_clip
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / CACHE_ARRAYS, joints=np.array(joints, np.float32), toes=np.array(toes, np.float32))
    (root / CACHE_INDEX).write_text(json.dumps({"version": CACHE_VERSION, "clips": clips}))
    return root


def test_known_prediction_gives_known_metrics() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.3, (6, 17, 3))
    target -= target[:, :1]
    shifted = target + np.array([0.0, 0.0, 0.022])  # every joint 22 mm too deep (root too: plain MPJPE)
    m = compute_metrics(shifted, target, {"style": np.array(["a", "a", "a", "b", "b", "b"])})
    assert m["mpjpe_mm"] == pytest.approx(22.0)
    assert m["depth_mpjpe_mm"] == pytest.approx(22.0)
    assert m["p_mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)  # a translation is removed by Procrustes
    assert m["pck150"] == pytest.approx(100.0)
    assert m["auc"] == pytest.approx(100.0 * 26 / 31)  # thresholds 0..150 step 5: 22 mm passes 26 of 31
    assert m["num_samples"] == 6
    assert m["per_label"]["style"]["b"] == {"num_samples": 3, "mpjpe_mm": pytest.approx(22.0),
                                             "depth_mpjpe_mm": pytest.approx(22.0)}
    sideways = target + np.array([0.03, 0.04, 0.0])  # 50 mm, no depth error
    m = compute_metrics(sideways, target)
    assert m["mpjpe_mm"] == pytest.approx(50.0) and m["depth_mpjpe_mm"] == pytest.approx(0.0)
    assert m["per_joint_mm"]["pelvis"] == pytest.approx(50.0)


def test_h36m_mpjpe_is_the_mean_of_per_action_means() -> None:
    """Human3.6M protocol: 3 'Walking' samples 10 mm off, 1 'Sitting' sample 30 mm off -> 20 mm (the
    benchmark's mean over actions), 15 mm over samples beside it."""
    rng = np.random.default_rng(1)
    target = rng.normal(0, 0.3, (4, 17, 3))
    target -= target[:, :1]
    predicted = target.copy()
    predicted[:3, 1:] += np.array([0.0, 0.0, 0.010])  # every non-root joint 10 mm deeper
    predicted[3, 1:] += np.array([0.0, 0.030, 0.0])
    actions = {"action": np.array(["Walking"] * 3 + ["Sitting"])}
    scale = 16 / 17  # the root (pelvis) is exact
    m = compute_metrics(predicted, target, actions, average_over="action")
    assert m["averaged_over"] == "action"
    assert m["mpjpe_mm"] == pytest.approx(20.0 * scale)
    assert m["mpjpe_mm_per_sample"] == pytest.approx(15.0 * scale)
    assert m["p_mpjpe_mm"] >= 0 and m["p_mpjpe_mm_per_sample"] >= 0
    plain = compute_metrics(predicted, target, actions)
    assert plain["averaged_over"] == "sample" and plain["mpjpe_mm"] == pytest.approx(15.0 * scale)
    with pytest.raises(ValueError, match="average_over"):
        compute_metrics(predicted, target, average_over="action")


def test_pck_auc_leave_out_the_root_and_follow_the_3dhp_rule() -> None:
    """PCK/AUC score every joint but the root by default (its error is 0 by construction) and count
    error < threshold, so a perfect pose has AUC 30/31 (PCK at 0 mm is 0), as the 3DHP tool computes it."""
    from lbi_ros.datasets.mpi_inf_3dhp import PCK_JOINTS

    rng = np.random.default_rng(2)
    target = rng.normal(0, 0.3, (5, 17, 3))
    target -= target[:, :1]
    m = compute_metrics(target.copy(), target)
    assert m["pck150"] == pytest.approx(100.0) and m["auc"] == pytest.approx(100.0 * 30 / 31)
    assert "pelvis" not in m["pck_joints"] and len(m["pck_joints"]) == 16
    off = target.copy()
    off[:, [7, 9]] += np.array([0.3, 0.0, 0.0])  # spine and neck_nose (3DHP 'spine', 'head') 300 mm off
    assert compute_metrics(off, target)["pck150"] == pytest.approx(100.0 * 14 / 16)
    official = compute_metrics(off, target, pck_joints=PCK_JOINTS)
    assert official["pck150"] == pytest.approx(100.0) and len(official["pck_joints"]) == 14
    assert {"pelvis", "spine", "neck_nose"}.isdisjoint(official["pck_joints"])
    univ = target * 0.9  # height-normalised skeleton: PCK/AUC compare with it, MPJPE with the metric target
    m = compute_metrics(univ, target, pck_target=univ, pck_joints=PCK_JOINTS)
    assert m["pck150"] == pytest.approx(100.0) and m["mpjpe_mm"] > 10.0


def test_3dhp_benchmark_set_scores_pck_on_the_universal_skeleton(tmp_path: Path) -> None:
    """End to end through MPI3DHPDataset -> benchmark set -> evaluate_model: an oracle that outputs the
    universal skeleton gets PCK 100 over the 14 official joints while its MPJPE against annot3 is not 0."""
    from types import SimpleNamespace

    from lbi_ros.datasets.mpi_inf_3dhp import PCK_JOINTS, MPI3DHPConfig, MPI3DHPDataset
    from lbi_ros.evaluation import benchmark_eval_set

    from .test_data_3dhp import write_sequence

    write_sequence(tmp_path / "TS1.npz")
    dataset = MPI3DHPDataset(MPI3DHPConfig(annot_dir=str(tmp_path), sequences=("TS1",)))
    eval_set = benchmark_eval_set("mpi_inf_3dhp", dataset, ("scene",), pck_target="joints_3d_univ",
                                  pck_joints=PCK_JOINTS)

    class Oracle(torch.nn.Module):
        def forward(self, **feeds: torch.Tensor) -> SimpleNamespace:
            n = feeds["keypoints_crop"].shape[0]
            return SimpleNamespace(joints_3d=torch.as_tensor(eval_set.extras["joints_3d_univ"][:n]),
                                   joints_3d_coarse=None)

    metrics, _ = evaluate_model(Oracle(), eval_set, batch_size=len(eval_set))
    assert metrics["pck150"] == pytest.approx(100.0) and metrics["auc"] == pytest.approx(100.0 * 30 / 31)
    assert metrics["mpjpe_mm"] > 10.0 and len(metrics["pck_joints"]) == 14


def test_viewpoint_azimuth() -> None:
    pose = np.zeros((1, 17, 3))
    pose[0, 8] = [0, -0.5, 0]  # thorax above the pelvis (y down)
    pose[0, 4], pose[0, 1] = [0.1, 0, 0], [-0.1, 0, 0]  # left hip on the image right: faces the camera
    assert viewpoint_azimuth_deg(pose)[0] == pytest.approx(0.0)
    pose[0, 4], pose[0, 1] = [-0.1, 0, 0], [0.1, 0, 0]  # seen from behind
    assert abs(viewpoint_azimuth_deg(pose)[0]) == pytest.approx(180.0)


def test_rendered_set_is_deterministic_and_labelled(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache")
    a = rendered_eval_set(str(cache), "test", 6, seed=1)
    b = rendered_eval_set(str(cache), "test", 6, seed=1)
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert np.array_equal(a.joints_3d, b.joints_3d)
    assert set(a.labels["style"]) == {"old", "tired"}  # only the test clips
    every = rendered_eval_set(str(cache), None, 8, seed=1)
    assert set(every.labels["style"]) == {"normal", "old", "tired", "happy"}


def test_rendered_set_crops_without_box_jitter(tmp_path: Path) -> None:
    """Evaluation crops are the deployment box rule on the noisy keypoints, even when the rendering config
    asks for training jitter; every other random choice of a sample stays what it was with jitter."""
    from dataclasses import replace

    from lbi_ros.preprocess import compute_crop_box
    from lbi_ros.synth.dataset import SyntheticDataConfig

    cache = write_cache(tmp_path / "cache")
    data = SyntheticDataConfig()
    assert data.box_jitter_scale > 0 and data.box_jitter_shift > 0  # training keeps its augmentation
    eval_set = rendered_eval_set(str(cache), "test", 6, seed=1, data=replace(data, box_jitter_scale=0.3))
    for kp, box in zip(eval_set.extras["keypoints_px"], eval_set.extras["box"], strict=True):
        rule = compute_crop_box(kp, data.crop)
        assert rule is not None
        np.testing.assert_allclose(box, [rule.cx, rule.cy, rule.w, rule.h], rtol=1e-6)
    from lbi_ros.evaluation.sets import _FrameRenderSet

    jittered = _FrameRenderSet(replace(data, cache_dir=str(cache), split="test"), None, None)
    sample = jittered.render_frame(None, np.random.default_rng([1, 0]))
    plain = rendered_eval_set("", None, 1, seed=1)
    np.testing.assert_array_equal(plain.extras["keypoints_px"][0], sample["keypoints_px"])  # same draws
    assert not np.allclose(plain.extras["box"][0], sample["box"])  # only the box differs


def test_eval_cli_defaults_to_the_test_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = write_cache(tmp_path / "cache")
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    out = tmp_path / "m.json"
    assert cli_main(["eval", str(ckpt), "--data", str(cache), "--num-samples", "6", "--latency-repeats", "0",
                     "--json", str(out)]) == 0
    assert "split: test (default) - held-out styles, same actors" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["per_label"]["style"]) == {"old", "tired"}  # no training style


def test_eval_cli_and_report(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache")
    torch.manual_seed(0)
    config = ModelConfig(dim=32, num_heads=2, depth_stage1=2, pgtl_layer=0, depth_stage2=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    out_json = tmp_path / "r" / "metrics.json"
    assert cli_main(["eval", str(ckpt), "--data", str(cache), "--split", "test", "--num-samples", "6",
                     "--latency-repeats", "0", "--json", str(out_json), "--out", str(tmp_path / "report")]) == 0
    first = json.loads(out_json.read_text())
    for key in ("mpjpe_mm", "p_mpjpe_mm", "depth_mpjpe_mm", "pck150", "auc", "num_samples"):
        assert key in first
    assert first["num_samples"] == 6
    for name in ("report.md", "report.json", "per_joint.png", "viewpoint.png", "examples.png"):
        assert (tmp_path / "report" / name).is_file()
    assert cli_main(["eval", str(ckpt), "--data", str(cache), "--split", "test", "--num-samples", "6",
                     "--latency-repeats", "2", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["mpjpe_mm"] == first["mpjpe_mm"]  # same fixed-seed set


def test_eval_cli_scores_the_deployed_graph_like_the_torch_model(tmp_path: Path) -> None:
    """``--runtime onnxruntime``: the same samples through ONNX Runtime (fp32) give the torch metrics."""
    cache = write_cache(tmp_path / "cache")
    torch.manual_seed(0)
    config = ModelConfig(dim=32, num_heads=2, depth_stage1=2, pgtl_layer=0, depth_stage2=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    scored = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / f"{runtime}.json"
        assert cli_main(["eval", str(ckpt), "--data", str(cache), "--num-samples", "6", "--latency-repeats", "0",
                         "--runtime", runtime, "--json", str(out)]) == 0
        scored[runtime] = json.loads(out.read_text())
    assert scored["onnxruntime"]["runtime"] == "onnxruntime" and scored["onnxruntime"]["params"] > 0
    assert scored["onnxruntime"]["mpjpe_mm"] == pytest.approx(scored["torch"]["mpjpe_mm"], abs=1e-3)


def test_evaluate_model_matches_compute_metrics(tmp_path: Path) -> None:
    eval_set = rendered_eval_set("", None, 4, seed=0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1))
    metrics, predicted = evaluate_model(model, eval_set)
    assert metrics["mpjpe_mm"] == pytest.approx(compute_metrics(predicted, eval_set.joints_3d)["mpjpe_mm"])
    write_report(metrics, eval_set, predicted, tmp_path / "rep")
    assert "MPJPE" in (tmp_path / "rep" / "report.md").read_text()


def test_benchmark_fixtures_evaluate(tmp_path: Path) -> None:
    """The H36M recipe's eval path on the VideoPose3D-format fixture (no images: blank crops)."""
    from lbi_ros.config import save_yaml

    from .test_data_h36m import write_fixture

    h36m = write_fixture(tmp_path)
    save_yaml(h36m, tmp_path / "h36m.yaml")
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    out = tmp_path / "h.json"
    assert cli_main(["eval", str(ckpt), "--benchmark", "h36m", "--data", str(tmp_path / "h36m.yaml"),
                     "--latency-repeats", "0", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_samples"] == 2 * 4 * 6 and "Walking" in metrics["per_label"]["action"]
    per_action = [g["mpjpe_mm"] for g in metrics["per_label"]["action"].values()]
    assert metrics["averaged_over"] == "action" and metrics["mpjpe_mm"] == pytest.approx(np.mean(per_action))


# What each shipped name holds (MODEL_CARD.md): the network kind and whether the file stores all its weights.
SHIPPED_KINDS = {"default": "lbi_gated", "baseline-2d": "lift2d", "lift2d-base": "lift2d", "lbi-scratch": "lbi"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_hash_config_and_run(name: str) -> None:
    from safetensors import safe_open

    path = default_weights_path(name)
    require(path.is_file(), f"{path.name} is not in this checkout")
    assert path.stat().st_size <= 16 * 2**20
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert SHIPPED_SHA256[name] and digest == SHIPPED_SHA256[name], f"{path.name} changed: sha256 {digest}"
    if SHIPPED_KINDS[name] == "lbi_gated":
        require_pose_models()  # its frozen backbone is rebuilt from the fetched BlazePose file
    model, ckpt = load_model(path)
    assert ckpt.model_config.kind == SHIPPED_KINDS[name]
    assert name != "lbi-scratch" or ckpt.model_config == ModelConfig(kind="lbi")
    with safe_open(str(path), framework="pt") as handle:  # third-party (BlazePose) weights are never shipped
        assert not [k for k in handle.keys() if k.startswith("backbone.")]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    inputs = {k: torch.as_tensor(v) for k, v in example_inputs(build_io_spec(ckpt.model_config), 2).items()}
    with torch.no_grad():
        out = model(**{"image_crop": None, **inputs})
    assert out.joints_3d.shape == (2, 17, 3) and torch.isfinite(out.joints_3d).all()
    assert "validation" in ckpt.extra and "train_config" in ckpt.extra


def test_3dhp_eval_config_on_fixture_files(tmp_path: Path) -> None:
    from .test_data_3dhp import write_sequence

    for seq in ("TS1", "TS5"):
        write_sequence(tmp_path / f"{seq}.npz", seed=len(seq))
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(config), config)
    out = tmp_path / "3dhp.json"
    eval_yaml = Path(__file__).resolve().parents[1] / "config" / "train" / "eval_3dhp.yaml"
    assert cli_main(["eval", str(ckpt), "--benchmark", "3dhp", "--data", str(eval_yaml), "--set",
                     f"annot_dir={tmp_path}", "--set", "sequences=[TS1, TS5]", "--latency-repeats", "0",
                     "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_samples"] == 12 and set(metrics["per_label"]["scene"]) == {"GS", "Outdoor"}
    assert len(metrics["pck_joints"]) == 14 and "pelvis" not in metrics["pck_joints"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_lift_in_the_node_pipeline(name: str) -> None:
    """The shipped weights behind the node's path (TorchBackend -> LiftingPipeline) on a rendered frame."""
    path = default_weights_path(name)
    require(path.is_file(), f"{path.name} is not in this checkout")
    from lbi_ros.geometry import Intrinsics
    from lbi_ros.input_checks import PersonKeypoints
    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.render.capsule.body_model import RenderConfig
    from lbi_ros.render.capsule.renderer import PersonRenderer
    from lbi_ros.runtime.torch_backend import TorchBackend
    from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

    model, _ = load_model(path)
    pipeline = LiftingPipeline(TorchBackend(model))
    errors = []
    for i in range(3):
        s = SyntheticPoseDataset(SyntheticDataConfig(samples_per_epoch=3, seed=7))[i]
        intr = Intrinsics(*map(float, s["intrinsics"]))
        width, height = (int(v) for v in s["image_size"])
        joints_cam = s["joints_3d"].astype(np.float64) + s["root_cam"]
        image = PersonRenderer(RenderConfig()).render(joints_cam, intr, height, width, np.random.default_rng(i))
        kp = np.concatenate([s["keypoints_gt_px"], np.ones((17, 1), np.float32)], 1)
        frame = pipeline.lift(image, intr, [PersonKeypoints("p", 1.0, kp)])
        assert len(frame.people) == 1, frame.problems
        rel = frame.people[0].joints_rel_m
        errors.append(np.linalg.norm(rel - s["joints_3d"], axis=-1).mean())
    assert float(np.mean(errors)) < 0.25  # a trained lifter, not noise (untrained: ~0.4-0.5 m)

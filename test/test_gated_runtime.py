"""The gated LBI (``kind: lbi_gated``) outside the feature cache: ``lbi eval``, the pipeline, export, the node.

A gated checkpoint warm-started from the shipped 2D-only lifter with its gates closed (zero, as at
initialisation) must give exactly the 2D-only lifter's output on any image: so every path that feeds it the
square crop can be checked against ``baseline-2d`` on the same samples, cheaply (scratch ``irnet_s8``
backbone, no BlazePose file needed).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from lbi_ros.checkpoint import load_model, read_checkpoint, save_checkpoint
from lbi_ros.cli.main import main as cli_main
from lbi_ros.geometry import Intrinsics, project
from lbi_ros.input_checks import PersonKeypoints
from lbi_ros.model import build_model
from lbi_ros.pipeline import LiftingPipeline
from lbi_ros.skeleton import STANDING_POSE_M
from lbi_ros.weights import resolve_checkpoint

from .conftest import require_module
from .test_evaluation import write_cache


def gated_from_baseline(path: Path) -> Path:
    """A tiny ``lbi_gated`` checkpoint: baseline-2d's weights in ``lift``, zero gates, scratch irnet_s8 256 px."""
    base, ckpt = load_model(resolve_checkpoint("baseline-2d"))
    config = replace(ckpt.model_config, kind="lbi_gated", encoder="irnet_s8", image_size=256)
    gated = build_model(config).eval()
    gated.load_lift2d(base.state_dict())
    return save_checkpoint(path, gated, config)


def _eval_json(tmp_path: Path, checkpoint: str, cache: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert cli_main(["eval", checkpoint, "--data", str(cache), "--split", "test", "--num-samples", "6",
                     "--latency-repeats", "0", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_eval_scores_a_gated_checkpoint_on_square_crops_of_the_same_samples(tmp_path: Path) -> None:
    from lbi_ros.evaluation import rendered_eval_set
    from lbi_ros.training.square_crops import square_eval_set

    cache = write_cache(tmp_path / "mocap")
    ckpt = gated_from_baseline(tmp_path / "gated.safetensors")
    assert read_checkpoint(ckpt).model_config.kind == "lbi_gated"
    box, square = rendered_eval_set(str(cache), "test", 4, 7), square_eval_set(str(cache), "test", 4, 7)
    assert square.inputs["image_crop"].shape == (4, 3, 256, 256)
    for k in ("keypoints_crop", "keypoints_cam", "crop_cam"):  # the same samples, only the crop differs
        np.testing.assert_array_equal(square.inputs[k], box.inputs[k])
    np.testing.assert_array_equal(square.joints_3d, box.joints_3d)
    assert np.ptp(square.inputs["image_crop"]) > 1.0  # a person was drawn, not a blank placeholder
    want = _eval_json(tmp_path, "baseline-2d", cache, "base")
    got = _eval_json(tmp_path, str(ckpt), cache, "gated", "--images", "shuffled")
    assert got["model_kind"] == "lbi_gated" and got["num_samples"] == want["num_samples"] == 6
    assert abs(got["mpjpe_mm"] - want["mpjpe_mm"]) < 1e-3, (got["mpjpe_mm"], want["mpjpe_mm"])
    assert abs(got["mpjpe_mm_images_shuffled"] - want["mpjpe_mm"]) < 1e-3  # closed gates: the image is unused


def _frame() -> tuple[np.ndarray, Intrinsics, list[PersonKeypoints]]:
    intr = Intrinsics(500.0, 500.0, 320.0, 240.0)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    people = []
    for pid, root in (("a", [-0.8, 0.0, 4.0]), ("b", [0.9, 0.1, 6.0])):
        pixels = project(STANDING_POSE_M + np.asarray(root), intr)
        people.append(PersonKeypoints(pid, 0.8, np.column_stack([pixels, np.full(17, 0.9)])))
    return image, intr, people


def _lift(backend) -> np.ndarray:  # noqa: ANN001 - any InferenceBackend
    image, intr, people = _frame()
    result = LiftingPipeline(backend).lift(image, intr, people)
    assert [p.person_id for p in result.people] == ["a", "b"], result.problems
    return np.stack([p.joints_cam_m for p in result.people])


def test_pipeline_feeds_a_gated_model_the_shared_square_crop(tmp_path: Path) -> None:
    from lbi_ros.pose2d.roi import crop_image, person_roi_from_box
    from lbi_ros.preprocess import CropConfig, compute_crop_box, normalize_image, prepare_inputs
    from lbi_ros.runtime.factory import create_backend

    ckpt = gated_from_baseline(tmp_path / "gated.safetensors")
    backend = create_backend(str(ckpt), "torch")
    pipeline = LiftingPipeline(backend)
    assert pipeline.square_size == 256 and LiftingPipeline(create_backend("baseline-2d", "torch")).square_size is None
    image, intr, people = _frame()
    batch = prepare_inputs(image, people[0].keypoints_px[None], intr, square_size=256)
    box = compute_crop_box(people[0].keypoints_px)
    want = crop_image(image, person_roi_from_box(box.cx, box.cy, box.h), 256)  # the shared rule, pose2d.roi
    got = batch.inputs.image_crop[0]  # the same warp up to cv2's fixed-point rounding: 1 grey level, rarely
    np.testing.assert_allclose(got, normalize_image(want, CropConfig(height=256, width=256)), atol=1.01 / (255 * 0.224))
    np.testing.assert_allclose(_lift(backend), _lift(create_backend("baseline-2d", "torch")), atol=1e-6)


def test_export_of_a_gated_checkpoint_runs_in_onnx_runtime(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    require_module("onnx")
    require_module("onnxruntime")
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.runtime.ort_backend import OnnxRuntimeBackend

    ckpt = gated_from_baseline(tmp_path / "gated.safetensors")
    out = tmp_path / "m.onnx"
    assert cli_main(["export", str(ckpt), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    parity = [line.split() for line in text.splitlines() if line.strip().startswith(("joints_3d ", "joints_logvar "))]
    assert len(parity) == 2 and all(float(err) <= 1e-4 and ok == "OK" for _, err, *_, ok in parity), text
    backend = OnnxRuntimeBackend(out)
    assert backend.io_spec.input("image_crop").shape[1:] == (3, 256, 256)
    np.testing.assert_allclose(_lift(backend), _lift(create_backend("baseline-2d", "torch")), atol=1e-4)

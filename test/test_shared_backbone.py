"""Issue 18, item 8: with the built-in detector, a gated lifter over a BlazePose tap reuses the landmark pass's map.

Real files throughout (BlazePose models, a gated checkpoint, the demo scene's rendered frames): a gated model
over ``blazepose_add_8`` is built in-test from the 2D-only lifter with *non-zero* gates (zero gates would ignore
the image and make every equality below vacuous), and the tests check that (a) the lift from the landmark
pass's features equals the lift whose backbone the lifter runs itself on the same square, (b) the landmark
net's tap on the shared crop is the lifter backbone's map of its own crop, and (c) in builtin mode the backbone
runs once per tracked person per frame.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lbi_ros.checkpoint import load_model, save_checkpoint
from lbi_ros.model import build_model
from lbi_ros.pipeline import LiftingPipeline
from lbi_ros.pose2d.roi import SharedCrop
from lbi_ros.runtime.torch_backend import TorchBackend
from lbi_ros.weights import resolve_checkpoint

from .conftest import require_module, require_pose_models

FRAMES = range(30, 34)  # demo scene frames: two capsule people, both found by the detector


@pytest.fixture(scope="module")
def gated_ckpt(tmp_path_factory) -> Path:
    """A gated lifter over BlazePose add_8: the shipped 2D-only lifter's keypoint path, random image blocks,
    gates 3 (wide open: blanking the image moves the joints by ~7 mm, 70x the tolerance below)."""
    require_pose_models()
    base, ckpt = load_model(resolve_checkpoint("baseline-2d"))
    config = replace(ckpt.model_config, kind="lbi_gated", encoder="blazepose_add_8", image_size=256,
                     patch_centres="receptive_field")
    torch.manual_seed(0)
    gated = build_model(config).eval()
    gated.load_lift2d(base.state_dict())
    for block in gated.blocks:
        torch.nn.init.constant_(block.gate_attn, 3.0)
        torch.nn.init.constant_(block.gate_mlp, 3.0)
    return save_checkpoint(tmp_path_factory.mktemp("gated") / "gated_add8.safetensors", gated, config)


@pytest.fixture(scope="module")
def frames():
    from lbi_ros.demo.scene import INTRINSICS, DemoScene

    scene = DemoScene(2, seed=3)
    return [scene.frame(i).image_rgb for i in FRAMES], INTRINSICS


def _source(tap: str | None):
    from lbi_ros.pose2d.detector import DetectorConfig
    from lbi_ros.pose2d.keypoint_source import BuiltinKeypoints

    return BuiltinKeypoints(DetectorConfig(max_people=3, backend="torch", share_features_tap=tap))


def _joints(result, ids) -> np.ndarray:
    by_id = {p.person_id: p.joints_cam_m for p in result.people}
    assert sorted(by_id) == sorted(ids), result.problems
    return np.stack([by_id[i] for i in ids])


def test_lift_from_the_landmark_pass_equals_the_lifters_own_backbone(gated_ckpt, frames):
    """(a) Same person, same square: features from the landmark pass + the head == the whole model on its crop."""
    images, intrinsics = frames
    model, _ = load_model(gated_ckpt)
    pipeline = LiftingPipeline(TorchBackend(model))
    assert pipeline.share_backbone(gated_ckpt, "torch") == "add_8" and pipeline.head is not None
    standalone = LiftingPipeline(TorchBackend(model))
    source = _source("add_8")
    assert not source(images[0]).shared  # first frame: detector ROIs, nothing to share yet
    detected = source(images[1])
    ids = sorted(detected.shared)
    assert len(ids) == 2 and all(c.features.shape == (144, 8, 8) for c in detected.shared.values())
    got = _joints(pipeline.lift(images[1], intrinsics, detected.people, detected.joint_set,
                                shared=detected.shared), ids)
    own = {i: SharedCrop(c.roi) for i, c in detected.shared.items()}  # the same square, no features
    want = _joints(standalone.lift(images[1], intrinsics, detected.people, detected.joint_set, shared=own), ids)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # not vacuous: the image matters (other features move the joints), and so does the square's box
    zeros = {i: SharedCrop(c.roi, np.zeros_like(c.features)) for i, c in detected.shared.items()}
    blank = _joints(pipeline.lift(images[1], intrinsics, detected.people, detected.joint_set, shared=zeros), ids)
    assert np.abs(blank - want).max() > 3e-3, np.abs(blank - want).max()
    # a lens (crops through the lens model) or no shared crop: the lifter's own box and backbone, as before
    plain = _joints(standalone.lift(images[1], intrinsics, detected.people, detected.joint_set), ids)
    np.testing.assert_array_equal(
        _joints(pipeline.lift(images[1], intrinsics, detected.people, detected.joint_set), ids), plain)


def test_landmark_tap_on_the_shared_crop_is_the_lifters_backbone_map(gated_ckpt, frames):
    """(b) add_8 from the detector's landmark pass == PoseBackboneTap on the crop the lifter cuts of that ROI."""
    from lbi_ros.model.encoder import PoseBackboneTap
    from lbi_ros.preprocess import CropBox, prepare_inputs
    from lbi_ros.skeleton import MEDIAPIPE33

    images, intrinsics = frames
    source = _source("add_8")
    source(images[0])
    found = source.detector.detect(images[1])
    shared = [p for p in found if p.shared_features is not None]
    assert len(shared) == 2 and all(p.roi.rotation_rad == 0.0 for p in shared)
    boxes = [CropBox(p.roi.center_u, p.roi.center_v, 0.75 * p.roi.size_px, p.roi.size_px) for p in shared]
    batch = prepare_inputs(images[1], np.stack([p.keypoints_px for p in shared]), intrinsics,
                           joint_set=MEDIAPIPE33.name, square_size=256, given_boxes=boxes)
    with torch.no_grad():
        want = PoseBackboneTap("add_8").eval()(torch.from_numpy(batch.inputs.image_crop)).numpy()
    got = np.stack([p.shared_features for p in shared])
    scale = np.abs(want).max()
    assert scale > 1.0
    np.testing.assert_allclose(got, want, atol=1e-5 * scale)


def test_builtin_mode_runs_the_backbone_once_per_tracked_person(gated_ckpt, frames):
    """(c) Per frame: the landmark net runs once per person; the lifter's backbone only for people without a
    shared crop (the first frame's new detections); every person is lifted."""
    from lbi_ros.pose2d.backend import TorchNetBackend

    images, intrinsics = frames
    model, _ = load_model(gated_ckpt)
    rows = {"backbone": 0}
    model.backbone.register_forward_hook(lambda _m, args, _out: rows.__setitem__("backbone", rows["backbone"]
                                                                                  + args[0].shape[0]))
    pipeline = LiftingPipeline(TorchBackend(model))
    tap = pipeline.share_backbone(gated_ckpt, "torch")  # what the node does in builtin mode
    source = _source(tap)
    landmark = source.detector.landmark_backend
    assert isinstance(landmark, TorchNetBackend)
    crops: list[int] = []

    class CountingBackend:  # the real landmark backend, counting its crops
        name = landmark.name

        def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
            crops.append(x.shape[0])
            return landmark(x)

    source.detector.landmark_backend = CountingBackend()
    per_frame = []
    for image in images:
        before = rows["backbone"]
        detected = source(image)
        result = pipeline.lift(image, intrinsics, detected.people, detected.joint_set, shared=detected.shared)
        assert len(result.people) == len(detected.people) == 2, result.problems
        per_frame.append((crops[-1], rows["backbone"] - before, len(detected.shared)))
    # (landmark crops, lifter backbone crops, shared people): frame 0 both new, then both tracked and shared
    assert per_frame == [(2, 2, 0)] + [(2, 0, 2)] * (len(images) - 1), per_frame


def test_onnx_runtime_head_matches_torch_and_2d_only_models_share_nothing(gated_ckpt, tmp_path):
    """The head-only ONNX export (cached beside the full one) runs in ONNX Runtime like torch's forward_features."""
    require_module("onnx")
    require_module("onnxruntime")
    from lbi_ros.runtime.factory import create_head_backend, reference_outputs
    from lbi_ros.runtime.io_spec import FEATURES, example_inputs

    tap, head = create_head_backend(gated_ckpt, "auto", cache_dir=tmp_path)
    assert tap == "add_8" and head.name == "onnxruntime" and head.path.name.endswith("-head.onnx")
    assert head.io_spec.input(FEATURES).shape == ("batch", 144, 8, 8) and not head.io_spec.has_input("image_crop")
    model, _ = load_model(gated_ckpt)
    feeds = example_inputs(head.io_spec, 3)
    got, want = head.infer(feeds), reference_outputs(model, feeds)
    for name in ("joints_3d", "joints_logvar"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-4)
    assert create_head_backend(gated_ckpt, "auto", cache_dir=tmp_path)[1].path == head.path  # cached
    assert create_head_backend("baseline-2d") is None
    with pytest.raises(ValueError, match="head"):
        LiftingPipeline(TorchBackend(model), head=TorchBackend(model))  # a whole model is not a head


def test_partial_views_stay_on_mediapipes_roi():
    """Head-and-shoulders people (the square would shrink frame after frame, module doc of pose2d.detector) are
    tracked exactly as without sharing: MediaPipe's ROIs, nothing shared, the same keypoints."""
    require_pose_models()
    import skimage.data

    from lbi_ros.benchmarks.detector_bench import three_people_canvas

    image = three_people_canvas(skimage.data.astronaut())
    shared, plain = _source("add_8"), _source(None)
    for _ in range(3):
        a, b = shared(image), plain(image)
        assert len(a.people) == 3 and not a.shared
        for p, q in zip(a.people, b.people, strict=True):
            np.testing.assert_allclose(p.keypoints_px, q.keypoints_px, atol=1e-3)

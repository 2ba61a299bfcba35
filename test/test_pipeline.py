"""The one lifting path: checks -> crops -> one backend batch -> camera-frame placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.input_checks import InputLimits, PersonKeypoints
from lbi_ros.model import build_model
from lbi_ros.model.config import ModelConfig
from lbi_ros.pipeline import LiftingPipeline
from lbi_ros.runtime.torch_backend import TorchBackend
from lbi_ros.skeleton import STANDING_POSE_M

from .conftest import require

INTR = Intrinsics(500.0, 500.0, 320.0, 240.0)
STANDING = STANDING_POSE_M


@pytest.fixture(scope="module", params=["default", "baseline-2d"])
def pipeline(request):
    """The shipped weights (LBI and the 2D-only lifter) behind the torch backend."""
    from lbi_ros.runtime.factory import create_backend
    from lbi_ros.weights import default_weights_path

    require(default_weights_path(request.param).is_file(),
            f"shipped weights {request.param!r} are not in this checkout")
    return LiftingPipeline(create_backend(request.param, "torch"), limits=InputLimits(min_visible_joints=6))


def test_degenerate_prediction_is_not_published():
    """A zero-size pose fits the 2D at any depth: nothing is published, and the reason is named."""
    model = build_model(ModelConfig(kind="lift2d"))
    with torch.no_grad():
        model.head.linear.weight.zero_()  # the real network, made to predict a point-sized person
    result = LiftingPipeline(TorchBackend(model)).lift(np.zeros((480, 640, 3), np.uint8), INTR,
                                                        [person_at("a", [0, 0, 4])])
    assert result.people == () and [p.key for p in result.problems] == ["root_unsolvable"]


def person_at(pid: str, root, conf=0.9) -> PersonKeypoints:
    pixels = project(STANDING + np.asarray(root), INTR)
    return PersonKeypoints(pid, 0.8, np.column_stack([pixels, np.full(17, conf)]))


def test_every_person_lifted_in_one_batch(pipeline):
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    people = [person_at("a", [-0.8, 0.0, 4.0]), person_at("b", [0.9, 0.1, 6.0]), person_at("c", [0.0, 0.0, 3.0])]
    result = pipeline.lift(image, INTR, people)
    assert [p.person_id for p in result.people] == ["a", "b", "c"] and result.problems == ()
    assert {"crop", "infer", "postprocess"} <= set(result.timings_ms)
    for p in result.people:
        assert p.joints_cam_m.shape == (17, 3) and np.all(np.isfinite(p.joints_cam_m))
        np.testing.assert_allclose(p.joints_cam_m - p.root_cam_m, p.joints_rel_m, atol=1e-9)
        np.testing.assert_allclose(p.joints_rel_m[0], 0.0, atol=1e-6)  # pelvis-relative
        assert p.root_cam_m[2] > 0 and np.isfinite(p.reprojection_error_px)
        assert np.all((p.confidence >= 0) & (p.confidence <= 1)) and np.all(p.uncertainty_m > 0)
        assert p.valid.all() and p.root_depth_std_m > 0


def test_root_placement_follows_the_2d_position(pipeline):
    """The solved root reprojects near the 2D pelvis and lands at about the true depth."""
    image = np.zeros((480, 640, 3), np.uint8)
    result = pipeline.lift(image, INTR, [person_at("a", [-0.8, 0.0, 4.0]), person_at("b", [0.9, 0.1, 6.0])])
    for person, root in zip(result.people, ([-0.8, 0.0, 4.0], [0.9, 0.1, 6.0]), strict=True):
        u, v = project(person.root_cam_m, INTR)
        u_true, v_true = project(np.asarray(root, float), INTR)
        assert abs(u - u_true) < 40 and abs(v - v_true) < 40
        assert 0.65 * root[2] < person.root_cam_m[2] < 1.35 * root[2]  # metric depth from a trained lifter


def test_bad_person_skipped_others_kept(pipeline):
    image = np.zeros((480, 640, 3), np.uint8)
    sparse = person_at("sparse", [0, 0, 4])
    sparse.keypoints_px[4:, 2] = 0.0
    broken = person_at("nan", [0.5, 0, 5])
    broken.keypoints_px[:, 0] = np.nan
    result = pipeline.lift(image, INTR, [sparse, person_at("ok", [-0.5, 0, 4]), broken])
    assert [p.person_id for p in result.people] == ["ok"]
    assert {p.key for p in result.problems} == {"too_few_joints", "nonfinite_keypoint"}


def test_missing_joints_are_marked_invalid(pipeline):
    person = person_at("a", [0, 0, 4])
    person.keypoints_px[13, 2] = 0.0  # l_wrist missing
    result = pipeline.lift(np.zeros((480, 640, 3), np.uint8), INTR, [person])
    valid = result.people[0].valid
    assert not valid[13] and valid.sum() == 16 and result.people[0].confidence[13] == 0


def test_empty_frame(pipeline):
    result = pipeline.lift(np.zeros((480, 640, 3), np.uint8), INTR, [])
    assert result.people == () and result.problems == ()


def test_rejects_a_non_rgb_image(pipeline):
    with pytest.raises(ValueError, match="uint8 RGB"):
        pipeline.lift(np.zeros((480, 640), np.uint8), INTR, [])


def test_implausibly_far_person_is_not_published(pipeline):
    strict = LiftingPipeline(pipeline.backend, max_root_depth_m=1.0)
    result = strict.lift(np.zeros((480, 640, 3), np.uint8), INTR, [person_at("a", [0, 0, 4])])
    assert result.people == () and [p.key for p in result.problems] == ["implausible_depth"]


def test_crops_are_cut_only_for_a_model_that_reads_the_image(pipeline, monkeypatch):
    """A 2D-only lifter has no ``image_crop`` input: cutting and normalising crops for it is wasted time
    (about 0.5 ms a person here); the LBI needs one crop per person."""
    import lbi_ros.preprocess as preprocess

    cuts = []
    warp = preprocess.warp_crop
    monkeypatch.setattr(preprocess, "warp_crop", lambda *a, **k: cuts.append(1) or warp(*a, **k))
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    people = [person_at("a", [-0.8, 0.0, 4.0]), person_at("b", [0.9, 0.1, 6.0])]
    result = pipeline.lift(image, INTR, people)
    reads_image = pipeline.backend.io_spec.has_input("image_crop")
    assert len(cuts) == (2 if reads_image else 0) and len(result.people) == 2

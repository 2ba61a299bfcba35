"""Both shipped lifters on a real photograph (scikit-image's astronaut, hand-annotated COCO-17 keypoints).

Why: every other test feeds rendered or synthetic inputs. This one runs a real photo through
:class:`~lbi_ros.pipeline.LiftingPipeline` (the node's code path) and checks physical plausibility, not
fixed numbers: finite, metric (shoulder width of an adult), in front of the camera within the
pipeline's depth limit, consistent with the 2D (reprojection), and the same left/right for both models.
scikit-image is a pinned dev dependency, so it is imported here directly: a missing one fails, it
does not skip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data  # noqa: F401  (a hard dev dependency: fail here, do not skip, when it is missing)

from lbi_ros.demo import real_photo
from lbi_ros.geometry import project
from lbi_ros.pipeline import MAX_ROOT_DEPTH_M
from lbi_ros.skeleton import H36M17, map_to_h36m

L_SHOULDER, R_SHOULDER = H36M17.index("l_shoulder"), H36M17.index("r_shoulder")


@pytest.fixture(scope="module")
def result() -> real_photo.PhotoLift:
    return real_photo.lift_photo("torch")


def test_fixture_validates(tmp_path) -> None:
    kp = real_photo.load_keypoints()
    assert kp.shape == (17, 3)
    present = kp[:, 2] > 0
    assert present.sum() >= 6  # the pipeline's default min_visible_joints
    assert np.all(kp[present, :2] >= 0) and np.all(kp[present, :2] <= 511)
    with pytest.raises(ValueError, match="annotated on"):
        real_photo.load_keypoints(image_size=(640, 480))
    data = json.loads(real_photo.FIXTURE_PATH.read_text())
    data["keypoints_px"][0][0] = 900.0  # a visible joint off the 512 x 512 image: refused, not cleaned
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="outside"):
        real_photo.load_keypoints(tmp_path / "bad.json")


def test_both_models_lift_the_photo_plausibly(result: real_photo.PhotoLift) -> None:
    assert set(result.people) == set(real_photo.MODELS)
    expected_valid = map_to_h36m(result.keypoints_px, "coco17")[:, 2] > 0.05
    width = result.image.shape[1]
    for label, person in result.people.items():
        j = person.joints_cam_m
        assert j.shape == (17, 3) and np.all(np.isfinite(j)), label
        assert np.all(np.isfinite(person.uncertainty_m)) and np.all((person.confidence >= 0) & (person.confidence <= 1))
        np.testing.assert_array_equal(person.valid, expected_valid, err_msg=label)
        shoulders = float(np.linalg.norm(j[L_SHOULDER] - j[R_SHOULDER]))
        assert 0.2 <= shoulders <= 0.6, (label, shoulders)  # metres: an adult, not pixels or a unit skeleton
        assert 0.1 < person.root_cam_m[2] <= MAX_ROOT_DEPTH_M, (label, person.root_cam_m)
        assert np.all(j[:, 2] > 0.1), label  # every joint in front of the camera
        # The lifted pose explains the 2D it was given: loose (hand annotation, assumed intrinsics).
        uv = project(j[person.valid], result.intrinsics)
        err = np.linalg.norm(uv - map_to_h36m(result.keypoints_px, "coco17")[person.valid, :2], axis=-1)
        assert float(np.median(err)) < 0.1 * width, (label, err)
        # The person's left is on the image's right: +x in the camera frame, for both models.
        assert j[L_SHOULDER, 0] > j[R_SHOULDER, 0], label


def test_lbi_reads_the_image_and_the_2d_model_does_not(result: real_photo.PhotoLift) -> None:
    """The image branch is live on a real photo: a blank image changes LBI's pose, not the 2D-only one."""
    shifts = real_photo.grey_image_shift(result, "torch")
    assert set(shifts) == set(real_photo.MODELS)
    for label, (mean, most) in shifts.items():
        assert 0 <= mean <= most
        assert (most > 1e-3) if label == "LBI" else (most < 1e-6), (label, most)


def test_figure_is_written(result: real_photo.PhotoLift, tmp_path) -> None:
    path = real_photo.draw_figure(result, tmp_path / "real_photo.png")
    assert path.stat().st_size > 20_000

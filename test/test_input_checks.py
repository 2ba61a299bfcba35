"""Bad 2D input is cleaned or skipped with a named problem; good people of the same frame still pass."""

from __future__ import annotations

import numpy as np
import pytest

from lbi_ros.input_checks import InputLimits, PersonKeypoints, check_people, clean_person

SIZE = (640, 480)
LIMITS = InputLimits(min_visible_joints=4)


def person(pid="a", score=0.9, n=17, seed=0):
    rng = np.random.default_rng(seed)
    kp = np.column_stack([rng.uniform(100, 500, n), rng.uniform(50, 400, n), rng.uniform(0.5, 1.0, n)])
    return PersonKeypoints(pid, score, kp)


def keys(checked):
    return [p.key for p in checked.problems]


def test_clean_person_passes_untouched():
    p = person()
    checked = check_people([p], SIZE, LIMITS)
    assert checked.problems == () and np.array_equal(checked.people[0].keypoints_px, p.keypoints_px)


@pytest.mark.parametrize("joint_value, key", [
    ((np.nan, 10.0, 0.9), "nonfinite_keypoint"), ((np.inf, 10.0, 0.9), "nonfinite_keypoint"),
    ((-5.0, 10.0, 0.9), "keypoint_out_of_image"), ((10.0, 900.0, 0.9), "keypoint_out_of_image"),
    ((10.0, 10.0, 1.5), "confidence_out_of_range"), ((10.0, 10.0, -0.1), "confidence_out_of_range"),
    ((10.0, 10.0, np.nan), "confidence_out_of_range"),
])
def test_bad_joint_becomes_missing(joint_value, key):
    kp = person().keypoints_px.copy()
    kp[3] = joint_value
    cleaned, problems = clean_person(kp, SIZE, LIMITS)
    assert [p.key for p in problems] == [key]
    assert np.all(cleaned[3] == 0.0) and np.all(np.isfinite(cleaned))
    assert np.array_equal(cleaned[4:], kp[4:])


def test_nan_coordinates_of_a_missing_joint_are_fine():
    kp = person().keypoints_px.copy()
    kp[2] = (np.nan, np.nan, 0.0)
    cleaned, problems = clean_person(kp, SIZE, LIMITS)
    assert problems == [] and np.all(cleaned[2] == 0)


def test_person_with_too_few_joints_is_skipped_others_kept():
    sparse = person("sparse")
    sparse.keypoints_px[3:, 2] = 0.0
    checked = check_people([person("a"), sparse, person("b", seed=1)], SIZE, LIMITS)
    assert [p.person_id for p in checked.people] == ["a", "b"] and keys(checked) == ["too_few_joints"]


def test_duplicate_and_empty_ids():
    checked = check_people([person("a"), person("a", seed=2), person("")], SIZE, LIMITS)
    assert [p.person_id for p in checked.people] == ["a", "idx2"]
    assert keys(checked) == ["duplicate_person_id", "empty_person_id"]


def test_people_over_limit_keeps_the_best_scores():
    people = [person(str(i), score=i / 100, seed=i) for i in range(100)]
    checked = check_people(people, SIZE, InputLimits(max_people=5))
    assert sorted(p.person_id for p in checked.people) == ["95", "96", "97", "98", "99"]
    assert keys(checked) == ["people_over_limit"]


def test_empty_frame_is_not_a_problem():
    assert check_people([], SIZE, LIMITS) == check_people((), SIZE, LIMITS)
    assert check_people([], SIZE, LIMITS).people == ()


def test_limits_validated():
    with pytest.raises(ValueError):
        InputLimits(min_visible_joints=1)
    with pytest.raises(ValueError):
        InputLimits(max_people=0)

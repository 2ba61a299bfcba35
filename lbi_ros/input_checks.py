"""Checks on 2D people from outside (a detector over ROS, a file): clean what can be saved, reject the rest.

The rule everywhere: a bad joint becomes a *missing* joint (confidence 0) and is reported; a person
with too few usable joints is skipped and reported; the other people of the frame are still lifted.
Each problem has a short stable key (used as a diagnostics counter name) and a message that says
what was wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PersonKeypoints:
    """One person's 2D keypoints as received: ``keypoints_px`` (J, 3) = [u, v, confidence] in pixels."""

    person_id: str
    score: float
    keypoints_px: np.ndarray


@dataclass(frozen=True)
class Problem:
    key: str  # counter name, e.g. "nonfinite_keypoint"
    message: str


@dataclass(frozen=True)
class CheckedPeople:
    """The people that passed, cleaned (bad joints set missing), and every problem found on the way."""

    people: tuple[PersonKeypoints, ...]
    problems: tuple[Problem, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class InputLimits:
    min_visible_joints: int = 6
    """Fewer usable joints than this and a person is skipped: the lifter would only guess."""
    min_confidence: float = 0.05
    """Joints at or below this confidence count as missing."""
    max_people: int = 16
    """At most this many people are lifted per frame (highest scores first): bounded latency."""
    image_margin_px: float = 0.0
    """How far outside the image a keypoint may lie (detectors extrapolate slightly at the borders)."""

    def __post_init__(self) -> None:
        if self.min_visible_joints < 2:
            raise ValueError(f"min_visible_joints must be >= 2 (root recovery needs two), got {self.min_visible_joints}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")
        if self.image_margin_px < 0:
            raise ValueError(f"image_margin_px must be >= 0, got {self.image_margin_px}")


def clean_person(keypoints_px: np.ndarray, image_size: tuple[int, int], limits: InputLimits
                 ) -> tuple[np.ndarray, list[Problem]]:
    """Return a cleaned copy of ``keypoints_px`` (J, 3) and the problems found. ``image_size`` = (width, height)."""
    kp = np.array(keypoints_px, dtype=np.float64, copy=True)
    problems: list[Problem] = []
    conf = kp[:, 2]
    bad_conf = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
    if bad_conf.any():
        problems.append(Problem("confidence_out_of_range",
                                f"{int(bad_conf.sum())} joint confidence(s) outside [0, 1] (e.g. {conf[bad_conf][0]!r}): "
                                "treated as missing; publish probabilities, not logits or heatmap peaks"))
        conf[bad_conf] = 0.0
    present = conf > limits.min_confidence
    nonfinite = present & ~np.all(np.isfinite(kp[:, :2]), axis=1)
    if nonfinite.any():
        problems.append(Problem("nonfinite_keypoint",
                                f"{int(nonfinite.sum())} joint(s) with NaN/inf pixel coordinates but confidence > 0: "
                                "treated as missing; set confidence 0 for joints you did not detect"))
        present &= ~nonfinite
    width, height = image_size
    m = limits.image_margin_px
    with np.errstate(invalid="ignore"):
        outside = present & ((kp[:, 0] < -m) | (kp[:, 1] < -m) | (kp[:, 0] > width + m) | (kp[:, 1] > height + m))
    if outside.any():
        problems.append(Problem("keypoint_out_of_image",
                                f"{int(outside.sum())} joint(s) outside the {width}x{height} image: treated as missing; "
                                "are the keypoints for this image (same resolution, pixel units)?"))
        present &= ~outside
    kp[~present] = 0.0
    return kp, problems


def check_people(people: Sequence[PersonKeypoints], image_size: tuple[int, int], limits: InputLimits) -> CheckedPeople:
    """Clean every person, skip those that cannot be lifted, resolve duplicate/empty ids, cap the count."""
    problems: list[Problem] = []
    kept: list[PersonKeypoints] = []
    seen: set[str] = set()
    for index, person in enumerate(people):
        person_id = person.person_id
        if not person_id:
            person_id = f"idx{index}"
            problems.append(Problem("empty_person_id", f"person {index} has an empty id: published as {person_id!r}; "
                                    "set ids upstream so TF frames stay stable across frames"))
        if person_id in seen:
            problems.append(Problem("duplicate_person_id", f"person id {person_id!r} appears twice in one frame: "
                                    "the later one is skipped (its TF frames would collide)"))
            continue
        seen.add(person_id)
        keypoints, person_problems = clean_person(person.keypoints_px, image_size, limits)
        problems += person_problems
        visible = int((keypoints[:, 2] > 0).sum())
        if visible < limits.min_visible_joints:
            problems.append(Problem("too_few_joints", f"person {person_id!r} has {visible} usable joints, fewer than "
                                    f"min_visible_joints={limits.min_visible_joints}: skipped"))
            continue
        score = float(person.score) if np.isfinite(person.score) else 0.0
        kept.append(PersonKeypoints(person_id, float(np.clip(score, 0.0, 1.0)), keypoints))
    if len(kept) > limits.max_people:
        problems.append(Problem("people_over_limit", f"{len(kept)} people in one frame, above max_people="
                                f"{limits.max_people}: the {limits.max_people} highest-scoring are lifted"))
        kept = sorted(kept, key=lambda p: -p.score)[: limits.max_people]
    return CheckedPeople(tuple(kept), tuple(problems))

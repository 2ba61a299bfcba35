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
        score = float(person.score)
        if not (np.isfinite(score) and 0.0 <= score <= 1.0):
            problems.append(Problem("score_out_of_range", f"person {person_id!r} has score {score!r}, outside [0, 1]: "
                                    "clipped (NaN = 0); publish a probability"))
            score = float(np.clip(score, 0.0, 1.0)) if np.isfinite(score) else 0.0
        kept.append(PersonKeypoints(person_id, score, keypoints))
    if len(kept) > limits.max_people:
        problems.append(Problem("people_over_limit", f"{len(kept)} people in one frame, above max_people="
                                f"{limits.max_people}: the {limits.max_people} highest-scoring are lifted"))
        kept = sorted(kept, key=lambda p: -p.score)[: limits.max_people]
    return CheckedPeople(tuple(kept), tuple(problems))


@dataclass(frozen=True)
class StampPolicy:
    """When a frame's stamp (the source image stamp) makes its output meaningless or harmful.

    ``max_age_s``: older than this at processing time = stale (0: never). ``max_ahead_s``: further than
    this in the future = a broken clock (0: never). ``clock_reset_s``: a stamp this far *behind* the last
    processed one is a clock reset (a bag looped, sim time restarted): accepted, reported, and the
    ordering starts over; a smaller step back is an out-of-order frame and is dropped.
    """

    max_age_s: float = 1.0
    max_ahead_s: float = 0.5
    clock_reset_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_age_s < 0 or self.max_ahead_s < 0 or self.clock_reset_s <= 0:
            raise ValueError(f"stamp limits must be >= 0 (clock_reset_s > 0), got {self}")


class StampGuard:
    """Checks stamps in processing order, so outputs go out with strictly increasing stamps.

    Why each rule: a zero stamp means the driver does not stamp (nothing can be synchronised or
    transformed with it); a stale frame describes a scene that has moved on; a future stamp means a
    clock is wrong, and accepting one would also make every later good frame look "backwards"; an
    out-of-order frame would make TF and trackers jump back in time. Stamps are integer nanoseconds.
    """

    def __init__(self, policy: StampPolicy | None = None) -> None:
        self.policy = policy or StampPolicy()
        self.last_ns: int | None = None

    def check(self, stamp_ns: int, now_ns: int) -> tuple[bool, Problem | None]:
        """``(usable, problem)``: a rejected frame has ``usable`` False; a clock reset is usable but reported.

        Call :meth:`accept` once the frame's output is published. ``now_ns`` = 0 means the clock has not
        started (sim time before the first /clock): the age rules are skipped then.
        """
        problem = self._problem(stamp_ns, now_ns)
        if problem is not None and problem.key == "clock_jumped_back":
            self.last_ns = None
            return True, problem
        return problem is None, problem

    def _problem(self, stamp_ns: int, now_ns: int) -> Problem | None:
        p = self.policy
        if stamp_ns <= 0:
            return Problem("zero_stamp", "the image stamp is zero: the camera driver does not stamp its images "
                           "(set header.stamp to the capture time; 2D detectors must copy the image header)")
        if now_ns > 0:
            age_s = (now_ns - stamp_ns) / 1e9
            if p.max_ahead_s > 0 and -age_s > p.max_ahead_s:
                return Problem("future_stamp", f"the image stamp is {-age_s:.3f} s in the future (max_stamp_ahead="
                               f"{p.max_ahead_s}): the clocks of the camera and this node disagree (chrony/PTP; "
                               "use_sim_time for bags)")
            if p.max_age_s > 0 and age_s > p.max_age_s:
                return Problem("stale_input", f"the frame is {age_s:.2f} s old (max_input_age={p.max_age_s}): dropped; "
                               "are the clocks in sync, or is the input delayed (use_sim_time for bags)?")
        last = self.last_ns
        if last is not None and stamp_ns <= last:
            back_s = (last - stamp_ns) / 1e9
            if back_s >= p.clock_reset_s:
                return Problem("clock_jumped_back", f"stamps jumped {back_s:.1f} s back (a bag loop or a restarted "
                               "clock?): ordering restarts from this frame")
            return Problem("stamp_backwards", f"stamp {stamp_ns} ns is {back_s * 1e3:.1f} ms at or before the last "
                           "processed frame: out-of-order or repeated input dropped (does the driver re-stamp, or "
                           "do two publishers share the topic?)")
        return None

    def accept(self, stamp_ns: int) -> None:
        self.last_ns = stamp_ns if self.last_ns is None else max(self.last_ns, stamp_ns)

"""The built-in 2D source: camera image -> the lifter's 2D people input, plus the files the ``lbi detect`` CLI reads.

:class:`BuiltinKeypoints` wraps :class:`~lbi_ros.pose2d.detector.PersonDetector` and returns exactly what a
2D detector publishing on ``keypoints_2d`` would hand the lifter: one
:class:`~lbi_ros.input_checks.PersonKeypoints` per person in the MediaPipe-33 topology (``joint_set``),
full-image pixels, OpenCV convention (pixel centres at integers, as :mod:`lbi_ros.preprocess` reads them).
The lifter maps MediaPipe-33 to its H36M-17 input with the rules of :mod:`lbi_ros.skeleton` (as it does
for a MediaPipe-33 message), so the node's ``builtin`` mode and its ``topic`` mode fed with the same
people lift identically.

Small people: BlazePose's detector sees the whole frame letterboxed to 224 x 224 and misses people below
about a third of the frame height (on the demo scene, 640 x 480, it found none of the 140 px tall people
at 5.5 m, even at a score threshold of 0.05). :class:`TiledPersonDetector` also runs it on overlapping
square tiles of ``tile_fraction`` x the shorter side (two 403 px tiles on 640 x 480: people are seen 1.6x
larger), and merges the detections (the detector drops duplicates by box overlap). It costs one detector
call per tile, only when the detector is due (``detect_interval``); tracked people reuse their ROIs.

Occlusion: BlazePose's detector keys on the face, so a person seen from behind is found only while
tracked. When one is lost (another walked in front: the landmark model's pose flag drops),
:class:`TiledPersonDetector` keeps retrying the last ROI for ``retry_lost_frames`` frames, which
picks the person up again when the occluder has passed. On the demo scene (2 mesh people, every 2nd of
its first 240 frames as one stream, ``stream_config``) this took recall from 0.84 to 0.93 at precision
1.0 (:mod:`lbi_ros.benchmarks.detector_eval`). A retried ROI that shows the occluder yields a duplicate of
it and is dropped (landmark-box overlap).

One rule is added on top of the detector: a landmark outside the image was not seen (the landmark model
extrapolates it, e.g. the hips of a seated person below the frame), so its confidence becomes 0 (=
missing, see :mod:`lbi_ros.input_checks`); its coordinates are kept for reference.

:func:`list_inputs` and :func:`read_file` turn a path (image, video or folder) into named frames for
``lbi detect``; a file that cannot be decoded becomes a frame with an ``error`` instead of stopping the run.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lbi_ros.input_checks import PersonKeypoints
from lbi_ros.pose2d.backend import BackendKind
from lbi_ros.pose2d.detector import DetectorConfig, Person2D, PersonDetector, mark_unseen
from lbi_ros.pose2d.roi import Roi, SharedCrop
from lbi_ros.skeleton import MEDIAPIPE33

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


DEFAULT_TILE_FRACTION = 0.84
DEFAULT_RETRY_LOST_FRAMES = 30


def tile_origins(extent: int, side: int) -> list[int]:
    """Start offsets of tiles of ``side`` px covering ``extent`` px with >= 25 % overlap; [] if one tile
    would barely differ from the whole extent (less than a quarter of a tile left over)."""
    if extent - side <= 0.25 * side:
        return []
    count = math.ceil((extent - side) / (0.75 * side)) + 1
    return [round(k * (extent - side) / (count - 1)) for k in range(count)]


class TiledPersonDetector(PersonDetector):
    """:class:`PersonDetector` whose detector stage also runs on overlapping tiles (small people; module doc)."""

    def __init__(self, config: DetectorConfig | None = None, tile_fraction: float = DEFAULT_TILE_FRACTION,
                 retry_lost_frames: int = DEFAULT_RETRY_LOST_FRAMES, **backends) -> None:
        if not 0.2 <= tile_fraction <= 1.0:
            raise ValueError(f"tile_fraction must be in [0.2, 1], got {tile_fraction}")
        if retry_lost_frames < 0:
            raise ValueError(f"retry_lost_frames must be >= 0, got {retry_lost_frames}")
        super().__init__(config or DetectorConfig(), **backends)
        self.tile_fraction = tile_fraction
        self.retry_lost_frames = retry_lost_frames
        self._lost: dict[int, tuple[Roi, int]] = {}  # id -> (last ROI, frames since it was lost)

    def reset(self) -> None:
        super().reset()
        self._lost = {}

    def detect(self, image_rgb: np.ndarray, stamp_s: float | None = None) -> list[Person2D]:
        """:meth:`PersonDetector.detect`, retrying the ROIs of recently lost people (module doc)."""
        tracked = {pid: self._match.get(pid, roi) for pid, roi in self._kept}  # MediaPipe's ROI, also when shared
        if self.config.reuse_landmark_roi:
            self._kept = list(self._kept) + [(pid, roi) for pid, (roi, _) in self._lost.items() if pid not in tracked]
        people = super().detect(image_rgb, stamp_s)
        found = {p.id for p in people}
        lost = {pid: (roi, age + 1) for pid, (roi, age) in self._lost.items()}
        lost.update({pid: (roi, 0) for pid, roi in tracked.items()})
        self._lost = {pid: (roi, age) for pid, (roi, age) in lost.items()
                      if pid not in found and age < self.retry_lost_frames
                      and not any(_same_place(roi, p.roi) for p in people)}
        return people


    def detect_rois(self, image_rgb: np.ndarray) -> tuple[list[Roi], np.ndarray]:
        rois, scores = super().detect_rois(image_rgb)
        height, width = image_rgb.shape[:2]
        side = round(self.tile_fraction * min(height, width))
        xs, ys = tile_origins(width, side), tile_origins(height, side)
        if not xs and not ys:
            return rois, scores
        all_rois, all_scores = list(rois), list(scores)
        for y0 in ys or [(height - side) // 2]:
            for x0 in xs or [(width - side) // 2]:
                tile_rois, tile_scores = super().detect_rois(image_rgb[y0:y0 + side, x0:x0 + side])
                all_rois += [replace(r, center_u=r.center_u + x0, center_v=r.center_v + y0) for r in tile_rois]
                all_scores += list(tile_scores)
        order = np.argsort(-np.asarray(all_scores), kind="stable")  # best first, as the detector returns them
        return [all_rois[i] for i in order], np.asarray(all_scores, dtype=np.float32)[order]


def _same_place(a: Roi, b: Roi) -> bool:
    """Two ROIs of one person (a lost one found again under a new id): close centres and similar sizes. An
    occluder in front is not: it is nearer, so its ROI is much larger (or elsewhere)."""
    near = np.hypot(a.center_u - b.center_u, a.center_v - b.center_v) < 0.25 * a.size_px
    return bool(near and abs(b.size_px / a.size_px - 1.0) < 0.25)


def default_backend() -> BackendKind:
    """ONNX Runtime when installed (about 2.3x faster than torch eager, see :mod:`lbi_ros.pose2d.detector`)."""
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "torch"


STREAM_DETECT_INTERVAL = 3


def stream_config(max_people: int = 4, share_features_tap: str | None = None) -> DetectorConfig:
    """Detector settings for a camera stream (the node): the fastest backend, and while people are tracked
    the (tiled, so 3 calls on 640 x 480) detector runs every ``STREAM_DETECT_INTERVAL`` frames to find
    newcomers; tracked people reuse their ROIs in between. On the demo scene (2 mesh people, 640 x 480,
    shared 2-core CPU) this took the median frame from 148 ms to 50 ms at the same recall.
    ``share_features_tap``: hand the lifter the landmark pass's map of the shared crop (:mod:`~lbi_ros.pose2d.detector`)."""
    return DetectorConfig(max_people=max_people, backend=default_backend(), detect_interval=STREAM_DETECT_INTERVAL,
                          share_features_tap=share_features_tap)


@dataclass(frozen=True)
class DetectedFrame:
    """The 2D people of one image, in ``joint_set`` layout; ``timings_ms``: ``detect``, ``landmarks``.
    ``shared``: person id -> the shared square crop its landmarks came from and the lifter's backbone map of
    it (``DetectorConfig.share_features_tap``), for :meth:`lbi_ros.pipeline.LiftingPipeline.lift`."""

    joint_set: str
    people: tuple[PersonKeypoints, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    shared: dict[str, SharedCrop] = field(default_factory=dict)


class BuiltinKeypoints:
    """Image -> people for the lifter, with per-person ids tracked across calls (a video stream).

    Not thread-safe; one caller (the node's worker, the CLI loop). ``stamp_s`` must increase within a
    stream; a stamp that goes back (a replayed bag, a restarted camera) starts the tracking afresh.
    """

    joint_set: str = MEDIAPIPE33.name

    def __init__(self, config: DetectorConfig | None = None, detector: PersonDetector | None = None) -> None:
        if detector is None:
            detector = TiledPersonDetector(config or DetectorConfig(backend=default_backend()))
        self.detector = detector
        self._last_stamp_s: float | None = None

    def reset(self) -> None:
        """Forget the people seen so far (the next image is unrelated to the previous one)."""
        self.detector.reset()
        self._last_stamp_s = None

    def __call__(self, image_rgb: np.ndarray, stamp_s: float | None = None) -> DetectedFrame:
        """(H, W, 3) uint8 RGB -> the people in it; raises ValueError for any other array."""
        if stamp_s is not None:
            if self._last_stamp_s is not None and stamp_s <= self._last_stamp_s:
                log.info("image stamp went back (%.3f s after %.3f s): person tracking restarts", stamp_s,
                         self._last_stamp_s)
                self.detector.reset()
            self._last_stamp_s = stamp_s
        t0 = time.perf_counter()
        found = self.detector.detect(image_rgb, stamp_s)
        total_ms = (time.perf_counter() - t0) * 1e3
        height, width = image_rgb.shape[:2]
        people = tuple(PersonKeypoints(str(p.id), p.score, mark_unseen(p.keypoints_px, width, height))
                       for p in found)
        t = self.detector.last_timings
        timings = {"detect": t.detect_ms, "landmarks": t.landmarks_ms} if t is not None else {"detect": total_ms}
        shared = {str(p.id): SharedCrop(p.roi, p.shared_features) for p in found if p.shared_features is not None}
        return DetectedFrame(self.joint_set, people, timings, shared)


# ---------------------------------------------------------------------------------------------------------
# Files for `lbi detect`: records and drawings
# ---------------------------------------------------------------------------------------------------------


def person_record(person: PersonKeypoints, joint_set: str = MEDIAPIPE33.name) -> dict:
    """One person as a JSON-ready dict: id, score, skeleton, joint_names, keypoints [[u, v, confidence], ...]."""
    from lbi_ros.skeleton import get_joint_set

    names = get_joint_set(joint_set).joint_names
    kp = np.asarray(person.keypoints_px, dtype=np.float64)
    return {"id": person.person_id, "score": round(float(person.score), 4), "skeleton": joint_set,
            "joint_names": list(names),
            "keypoints": [[round(float(u), 2), round(float(v), 2), round(float(c), 4)] for u, v, c in kp]}


PALETTE = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255), (255, 255, 255))


def draw_people(image_rgb: np.ndarray, people: Sequence[PersonKeypoints], joint_set: str = MEDIAPIPE33.name,
                min_confidence: float = 0.05) -> np.ndarray:
    """A copy of ``image_rgb`` with each person's bones, joints and id drawn (joints at or below
    ``min_confidence`` are left out)."""
    import cv2

    from lbi_ros.skeleton import get_joint_set

    edges = get_joint_set(joint_set).bones
    canvas = np.ascontiguousarray(image_rgb).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 320))
    for k, person in enumerate(people):
        color = PALETTE[k % len(PALETTE)]
        kp = np.asarray(person.keypoints_px, dtype=np.float64)
        seen = kp[:, 2] > min_confidence
        pts = [(round(u), round(v)) for u, v in kp[:, :2]]
        for a, b in edges:
            if seen[a] and seen[b]:
                cv2.line(canvas, pts[a], pts[b], color, thickness, cv2.LINE_AA)
        for j in np.flatnonzero(seen):
            cv2.circle(canvas, pts[j], thickness + 1, color, -1, cv2.LINE_AA)
        if seen.any():
            top = kp[seen, :2].min(axis=0)
            cv2.putText(canvas, f"{person.person_id} ({person.score:.2f})", (round(top[0]), max(12, round(top[1]) - 6)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, color, thickness, cv2.LINE_AA)
    return canvas


# ---------------------------------------------------------------------------------------------------------
# Inputs for `lbi detect`: image, video or folder -> named frames
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFrame:
    """One image to detect in. ``name``: the file name, or ``<video>#<index>`` for a video frame.
    ``image_rgb`` is None when the file could not be read; ``error`` then says why. ``stream``: the
    video it belongs to (None for a still image): frames of one stream are tracked, stills are not."""

    name: str
    image_rgb: np.ndarray | None
    error: str = ""
    stream: str | None = None


def list_inputs(path: str | Path) -> list[Path]:
    """The files ``path`` stands for: itself, or a folder's images and videos sorted by name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected an image, a video or a folder of them)")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    skipped = sum(1 for p in path.iterdir() if p.is_file()) - len(files)
    if skipped:
        log.info("%s: %d file(s) that are neither images nor videos (by suffix) skipped", path, skipped)
    return files


def count_frames(path: Path) -> int:
    """Frames ``read_file`` will yield for ``path`` (a video's frame count as its container states it)."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return 1
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))) if capture.isOpened() else 1
    finally:
        capture.release()


def read_file(path: Path) -> Iterator[InputFrame]:
    """An image file -> one frame; a video -> its frames (``<name>#<index>``); unreadable -> one failed frame."""
    import cv2

    if path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                yield InputFrame(path.name, None, f"cannot open video {path} (unsupported codec or not a video)")
                return
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield InputFrame(f"{path.name}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stream=path.name)
                index += 1
            if index == 0:
                yield InputFrame(path.name, None, f"video {path} has no readable frames")
        finally:
            capture.release()
        return
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if bgr is None:
        yield InputFrame(path.name, None, f"cannot read {path} as an image (not an image, truncated, or no "
                         "permission)")
        return
    yield InputFrame(path.name, np.ascontiguousarray(bgr[:, :, ::-1]))  # BGR -> RGB

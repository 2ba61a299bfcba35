"""One matched (Image, Person2DArray) pair -> checked and lifted people, or a named rejection.

The node's worker thread calls :meth:`FrameProcessor.process` for every frame it takes from the
mailbox; the node only publishes what comes back and counts the problems. The order of the checks is
cheapest first: stamp (no copy), camera model, image layout, keypoint topology, then the per-person
checks and the lift (:class:`~lbi_ros.pipeline.LiftingPipeline`).

The rule for what is published: a frame whose image, camera model, stamp or topology is wrong is
*rejected* (``people is None``: nothing at all goes out for it, since no person in it could be
placed correctly). A frame that is sound but has bad people publishes the people that passed, and
each skipped person or cleaned joint is a named problem.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from lbi_ros.input_checks import InputLimits, PersonKeypoints, Problem, StampGuard, StampPolicy, clean_person
from lbi_ros.msg import Person2DArray
from lbi_ros.pipeline import LiftingPipeline, PersonLift
from lbi_ros.ros.image_conversion import ImageError, message_pixels, to_rgb
from lbi_ros.ros.messages import CameraModel, MessageError, normalize_frame_id, people_from_msg, stamp_ns

if TYPE_CHECKING:
    from lbi_ros.pose2d.keypoint_source import BuiltinKeypoints, DetectedFrame

# CameraInfo is kept per frame_id (an image is only lifted with the intrinsics of its own camera);
# a node serves one camera, so a handful of ids is plenty and the table can never grow without bound
# (least recently used first out; drivers republish CameraInfo with every image anyway).
MAX_CAMERAS = 16


@dataclass(frozen=True)
class FrameResult:
    """``people`` None = the frame is rejected and nothing is published for it."""

    header: Header
    people: tuple[PersonLift, ...] | None
    problems: tuple[Problem, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    num_input_people: int = 0
    detected: DetectedFrame | None = None  # keypoints_source builtin: the 2D people the node found (raw pixels)


class CameraModels:
    """The latest CameraInfo per ``frame_id``: valid models, or why the last one was rejected. Thread-safe.

    A CameraInfo with an empty ``frame_id`` serves images of any frame (drivers that do not fill it); a
    leading ``/`` is ignored (``/cam`` serves images of ``cam``).
    """

    def __init__(self, max_cameras: int = MAX_CAMERAS) -> None:
        self.max_cameras = max_cameras
        self._models: OrderedDict[str, CameraModel | MessageError] = OrderedDict()
        self._keys: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def update(self, msg: CameraInfo) -> MessageError | None:
        """Check and store ``msg``; returns the error if it is invalid (checked once per distinct content)."""
        frame = msg.header.frame_id.lstrip("/")
        key = (tuple(msg.k), tuple(msg.d), msg.distortion_model, msg.width, msg.height)
        with self._lock:
            if self._keys.get(frame) == key:
                model = self._models[frame]
                return model if isinstance(model, MessageError) else None
        try:
            model: CameraModel | MessageError = CameraModel(msg)
        except MessageError as exc:
            model = exc
        with self._lock:
            self._models[frame] = model
            self._models.move_to_end(frame)
            self._keys[frame] = key
            while len(self._models) > self.max_cameras:
                old, _ = self._models.popitem(last=False)
                self._keys.pop(old, None)
        return model if isinstance(model, MessageError) else None

    def lookup(self, frame_id: str) -> CameraModel:
        frame_id = frame_id.lstrip("/")  # as stored by update
        with self._lock:
            key = frame_id if frame_id in self._models else ""
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
            known = list(self._models)
        if model is None:
            raise MessageError("no_camera_info", f"no CameraInfo for frame {frame_id!r} (have {known}): cannot place "
                               "people in 3D; check the camera_info remapping and that the camera is calibrated")
        if isinstance(model, MessageError):
            raise MessageError("no_camera_info", f"the last CameraInfo for frame {frame_id!r} was rejected "
                               f"({model}); frames of that camera are dropped until a valid one arrives")
        return model


class FrameProcessor:
    """Stamp, camera, image and keypoint checks around the pipeline. Not thread-safe: one worker calls it."""

    def __init__(self, pipeline: LiftingPipeline, limits: InputLimits, stamp_policy: StampPolicy,
                 keypoint_source: BuiltinKeypoints | None = None) -> None:
        self.pipeline = pipeline
        self.keypoint_source = keypoint_source  # frames without keypoints are detected in by it
        self.limits = limits
        self.stamps = StampGuard(stamp_policy)
        self.cameras = CameraModels()

    def process(self, image: Image | CompressedImage, keypoints: Person2DArray | None, now_ns: int) -> FrameResult:
        """``keypoints`` None: the people are found in the image by ``keypoint_source`` (camera-only mode)."""
        if keypoints is None and self.keypoint_source is None:
            raise ValueError("a frame without keypoints needs a keypoint_source (keypoints_source: builtin)")
        t0 = time.perf_counter()
        header = image.header
        usable, stamp_problem = self.stamps.check(stamp_ns(header), now_ns)
        problems = [stamp_problem] if stamp_problem else []
        if not usable:
            return FrameResult(header, None, tuple(problems))
        try:
            frame_id, frame_problem = normalize_frame_id(header.frame_id)
            if frame_problem is not None:  # outputs and TF are stamped with the fixed frame id
                problems.append(frame_problem)
                header = Header(stamp=header.stamp, frame_id=frame_id)
            camera = self.cameras.lookup(frame_id)
            # a view of the message's pixels, RGB or BGR: only the person crops get converted (image_conversion
            # module doc); a CompressedImage is decoded here, in the worker thread
            pixels, color_order = message_pixels(image)
            camera.check_image(pixels.shape[1], pixels.shape[0])
            if keypoints is not None:
                joint_set, people, message_problems = people_from_msg(keypoints)
        except (ImageError, MessageError) as exc:
            return FrameResult(header, None, (*problems, Problem(exc.reason, str(exc))))
        if keypoints is None:  # the detector reads the whole RGB frame (converting it counts as convert, not detect)
            pixels, color_order = to_rgb(pixels, color_order), "rgb"
        detected, t_detect = None, time.perf_counter()
        if keypoints is None:  # the same people a 2D detector would publish for this image
            detected = self.keypoint_source(pixels, stamp_ns(header) / 1e9)
            joint_set, people, message_problems = detected.joint_set, list(detected.people), []
        t_detect = time.perf_counter() - t_detect
        problems += message_problems
        limits = self.limits
        if camera.lens is not None:
            people, clean_problems = self._undistort(camera, people, (pixels.shape[1], pixels.shape[0]))
            problems += clean_problems
            # the image-bounds check was done on the raw pixels; undistorted ones may leave the frame
            limits = dataclasses.replace(limits, image_margin_px=float(max(pixels.shape[:2])))
        t1 = time.perf_counter()
        self.pipeline.limits = limits
        if self.pipeline.crop.min_confidence != limits.min_confidence:  # one threshold for checks, crop and valid
            self.pipeline.crop = dataclasses.replace(self.pipeline.crop, min_confidence=limits.min_confidence)
        result = self.pipeline.lift(pixels, camera.intrinsics, people, joint_set, lens=camera.lens,
                                    shared=detected.shared if detected is not None else None,
                                    color_order=color_order)
        t2 = time.perf_counter()
        self.stamps.accept(stamp_ns(header))
        timings = dict(result.timings_ms, convert=(t1 - t0 - t_detect) * 1e3)
        if detected is not None:  # per-stage latency of camera-only mode: detect, landmarks, lift
            timings.update(detected.timings_ms, lift=(t2 - t1) * 1e3)
        count = len(keypoints.people) if keypoints is not None else len(people)
        return FrameResult(header, result.people, (*problems, *result.problems), timings, count, detected)

    @staticmethod
    def _undistort(camera: CameraModel, people: list[PersonKeypoints], image_size: tuple[int, int]
                   ) -> tuple[list[PersonKeypoints], list[Problem]]:
        """Clean each person on the raw (distorted) pixels, then move the present joints to the pinhole image."""
        problems: list[Problem] = []
        out = []
        for person in people:
            cleaned, person_problems = clean_person(person.keypoints_px, image_size,
                                                    InputLimits(min_confidence=0.0))
            problems += person_problems
            out.append(PersonKeypoints(person.person_id, person.score, camera.undistort(cleaned)))
        return out, problems

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

from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from lbi_ros.input_checks import InputLimits, PersonKeypoints, Problem, StampGuard, StampPolicy, clean_person
from lbi_ros.msg import Person2DArray
from lbi_ros.pipeline import LiftingPipeline, PersonLift
from lbi_ros.ros.image_conversion import ImageError, image_to_rgb
from lbi_ros.ros.messages import CameraModel, MessageError, people_from_msg, stamp_ns

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


class CameraModels:
    """The latest CameraInfo per ``frame_id``: valid models, or why the last one was rejected. Thread-safe.

    A CameraInfo with an empty ``frame_id`` serves images of any frame (drivers that do not fill it).
    """

    def __init__(self, max_cameras: int = MAX_CAMERAS) -> None:
        self.max_cameras = max_cameras
        self._models: OrderedDict[str, CameraModel | MessageError] = OrderedDict()
        self._keys: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def update(self, msg: CameraInfo) -> MessageError | None:
        """Check and store ``msg``; returns the error if it is invalid (checked once per distinct content)."""
        frame = msg.header.frame_id
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

    def __init__(self, pipeline: LiftingPipeline, limits: InputLimits, stamp_policy: StampPolicy) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.stamps = StampGuard(stamp_policy)
        self.cameras = CameraModels()

    def process(self, image: Image, keypoints: Person2DArray, now_ns: int) -> FrameResult:
        t0 = time.perf_counter()
        header = image.header
        usable, stamp_problem = self.stamps.check(stamp_ns(header), now_ns)
        problems = [stamp_problem] if stamp_problem else []
        if not usable:
            return FrameResult(header, None, tuple(problems))
        try:
            camera = self.cameras.lookup(header.frame_id)
            rgb = image_to_rgb(image)
            camera.check_image(rgb.shape[1], rgb.shape[0])
            joint_set, people, message_problems = people_from_msg(keypoints)
        except (ImageError, MessageError) as exc:
            return FrameResult(header, None, (*problems, Problem(exc.reason, str(exc))))
        problems += message_problems
        limits = self.limits
        if camera.distortion is not None:
            people, clean_problems = self._undistort(camera, people, (rgb.shape[1], rgb.shape[0]))
            problems += clean_problems
            # the image-bounds check was done on the raw pixels; undistorted ones may leave the frame
            limits = dataclasses.replace(limits, image_margin_px=float(max(rgb.shape[:2])))
        t1 = time.perf_counter()
        self.pipeline.limits = limits
        result = self.pipeline.lift(rgb, camera.intrinsics, people, joint_set)
        self.stamps.accept(stamp_ns(header))
        timings = dict(result.timings_ms, convert=(t1 - t0) * 1e3)
        return FrameResult(header, result.people, (*problems, *result.problems), timings, len(keypoints.people))

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

"""Messages <-> core types for the lifter node: 2D people in (ours or ROS4HRI), camera intrinsics, 3D skeletons out.

Every field from the wire is checked here; problems raise :class:`MessageError` with a stable
``reason`` (a diagnostics counter name) and a message saying how to fix the publisher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from lbi_ros.geometry import Intrinsics
from lbi_ros.input_checks import PersonKeypoints, Problem
from lbi_ros.lens import LENS_MODELS, LensDistortion
from lbi_ros.msg import Person2D, Person2DArray, Skeleton3D, Skeleton3DArray
from lbi_ros.pipeline import PersonLift
from lbi_ros.skeleton import COCO18, JOINT_SETS, accepted_joint_names, joint_set_from_names, names_match

# Distortion models we undistort keypoints for and crop through (lbi_ros.lens.LENS_MODELS).
DISTORTION_MODELS: dict[str, tuple[int, ...]] = LENS_MODELS
# A message with more people than this is not read at all: no detector reports that many in one
# image, and converting them would cost the node its latency budget (max_people caps the lifted ones).
MAX_PEOPLE_PER_MESSAGE = 1000


class MessageError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalize_frame_id(frame_id: str) -> tuple[str, Problem | None]:
    """A header's ``frame_id`` as TF needs it: ``(frame_id, problem)``; raises for an empty one.

    tf2 refuses frame ids with a leading ``/`` (a ROS 1 habit): it is stripped and reported, so the
    outputs and TF frames still land in the camera's frame. An empty frame id cannot be fixed: the 3D
    output would be in no frame at all, so the frame is rejected.
    """
    stripped = frame_id.lstrip("/")
    if not stripped:
        raise MessageError("empty_frame_id", f"header.frame_id is {frame_id!r}: the 3D output and TF would have no "
                           "frame; set it to the camera's optical frame (e.g. camera_color_optical_frame)")
    if stripped != frame_id:
        return stripped, Problem("frame_id_leading_slash", f"header.frame_id {frame_id!r} starts with '/', which tf2 "
                                 f"rejects: used {stripped!r}; drop the leading '/' in the camera driver")
    return frame_id, None


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def people_from_msg(msg: Person2DArray) -> tuple[str, list[PersonKeypoints], list[Problem]]:
    """Return (joint set name, people, problems) after checking the topology and every array length.

    A topology problem (unknown skeleton, joint_names that do not match it) rejects the whole message:
    no person's joints can be trusted. ``joint_names`` may use a set's own names or an alias list
    (:data:`lbi_ros.skeleton.JOINT_NAME_ALIASES`, e.g. the COCO dataset's ``left_shoulder`` for
    coco17); with an empty ``skeleton`` the set is the one ``joint_names`` declare. A person whose arrays
    have the wrong length is skipped and reported; the others are kept.
    """
    names = tuple(msg.joint_names)
    joint_set = JOINT_SETS.get(msg.skeleton) if msg.skeleton or not names else joint_set_from_names(names)
    if joint_set is None:
        raise MessageError("unknown_skeleton", f"skeleton {msg.skeleton!r} is unknown (or, when empty, joint_names "
                           f"name no known set); publish one of {sorted(JOINT_SETS)} with matching joint_names")
    if names and not names_match(joint_set, names):
        if len(names) != joint_set.num_joints:
            raise MessageError("joint_count_mismatch", f"{len(names)} joint_names for skeleton {joint_set.name!r}, "
                               f"which has {joint_set.num_joints}: {list(joint_set.joint_names)}")
        raise MessageError("joint_names_mismatch", f"joint_names do not match skeleton {joint_set.name!r}: expected "
                           f"one of {[list(a) for a in accepted_joint_names(joint_set)]}, got {list(names)}")
    if len(msg.people) > MAX_PEOPLE_PER_MESSAGE:
        raise MessageError("too_many_people", f"{len(msg.people)} people in one message (at most "
                           f"{MAX_PEOPLE_PER_MESSAGE} are read): is the detector's NMS off?")
    count = joint_set.num_joints
    people, problems = [], []
    for index, person in enumerate(msg.people):
        lengths = {len(person.u), len(person.v), len(person.confidence)}
        if lengths != {count}:
            problems.append(Problem("joint_count_mismatch", f"person {index} ({person.id!r}) has u/v/confidence of "
                                    f"lengths {len(person.u)}/{len(person.v)}/{len(person.confidence)}; skeleton "
                                    f"{msg.skeleton!r} needs {count} each: this person is skipped"))
            continue
        keypoints = np.column_stack([np.asarray(person.u, np.float64), np.asarray(person.v, np.float64),
                                     np.asarray(person.confidence, np.float64)])
        people.append(PersonKeypoints(person.id, float(person.score), keypoints))
    return joint_set.name, people, problems


class CameraModel:
    """Intrinsics and distortion from a CameraInfo, checked once per distinct message."""

    def __init__(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64)
        if k.size != 9 or not np.all(np.isfinite(k)):
            raise MessageError("bad_camera_info", f"CameraInfo.k must hold 9 finite numbers, got {list(k)}")
        if k[0] <= 0 or k[4] <= 0:
            raise MessageError("bad_camera_info", f"CameraInfo focal lengths must be positive, got fx={k[0]}, "
                               f"fy={k[4]}: is the camera calibrated?")
        if k[8] != 1.0 or k[6] != 0.0 or k[7] != 0.0:
            raise MessageError("bad_camera_info", f"CameraInfo.k is not a camera matrix (last row {list(k[6:])}, "
                               "expected [0, 0, 1])")
        self.frame_id = msg.header.frame_id
        self.intrinsics = Intrinsics.from_matrix(k)
        self.width, self.height = int(msg.width), int(msg.height)
        coefficients = np.asarray(msg.d, dtype=np.float64)
        self.model = msg.distortion_model
        # the lens model the crops are sampled through (None: pinhole or rectified image)
        self.lens: LensDistortion | None = None
        if coefficients.size and np.any(coefficients != 0):
            if msg.distortion_model not in DISTORTION_MODELS:
                raise MessageError("unsupported_distortion", f"distortion model {msg.distortion_model!r} is not "
                                   f"supported (use one of {sorted(DISTORTION_MODELS)} or rectified images, D = 0)")
            if coefficients.size not in DISTORTION_MODELS[msg.distortion_model]:
                raise MessageError("bad_camera_info", f"{msg.distortion_model} needs "
                                   f"{DISTORTION_MODELS[msg.distortion_model]} coefficients in D, got {coefficients.size}")
            if not np.all(np.isfinite(coefficients)):
                raise MessageError("bad_camera_info", "CameraInfo.d holds non-finite coefficients")
            self.lens = LensDistortion(self.model, tuple(coefficients))

    def check_image(self, width: int, height: int) -> None:
        if (self.width, self.height) != (0, 0) and (self.width, self.height) != (width, height):
            raise MessageError("camera_info_size_mismatch", f"CameraInfo is for {self.width}x{self.height} but the "
                               f"image is {width}x{height}: intrinsics would be wrong")

    def undistort(self, keypoints_px: np.ndarray) -> np.ndarray:
        """(J, 3) [u, v, conf] -> the same with (u, v) moved to the ideal pinhole image (no-op without D).

        Only present joints (conf > 0) are moved; missing ones keep their (ignored) coordinates.
        """
        if self.lens is None or not len(keypoints_px):
            return keypoints_px
        out = keypoints_px.copy()
        present = (out[:, 2] > 0) & np.all(np.isfinite(out[:, :2]), axis=1)
        if present.any():
            out[present, :2] = self.lens.undistort(out[present, :2], self.intrinsics)
        return out


def skeletons_msg(header: Header, joint_names: Sequence[str], parents: Sequence[int],
                  people: Sequence[PersonLift]) -> Skeleton3DArray:
    msg = Skeleton3DArray(header=header, skeleton="h36m17", joint_names=list(joint_names),
                          parents=[int(p) for p in parents])
    for person in people:
        skeleton = Skeleton3D(id=person.person_id, score=float(person.score))
        # tolist(): Python floats and bools in one call per array, not one float() per element
        skeleton.positions = [Point(x=x, y=y, z=z) for x, y, z in np.asarray(person.joints_cam_m, float).tolist()]
        skeleton.confidence = np.asarray(person.confidence, float).tolist()
        skeleton.uncertainty = np.asarray(person.uncertainty_m, float).tolist()
        skeleton.valid = np.asarray(person.valid, bool).tolist()
        x, y, z = np.asarray(person.root_cam_m, float).tolist()
        skeleton.root = Point(x=x, y=y, z=z)
        skeleton.root_depth_std = float(person.root_depth_std_m)
        msg.skeletons.append(skeleton)
    return msg


def keypoints_msg(header: Header, joint_set: str, people: Sequence[PersonKeypoints]) -> Person2DArray:
    """People found in one image as the Person2DArray a 2D detector publishes: ``header`` = the image's."""
    names = JOINT_SETS[joint_set].joint_names
    msg = Person2DArray(header=header, skeleton=joint_set, joint_names=list(names))
    for person in people:
        kp = np.asarray(person.keypoints_px, dtype=np.float64)  # (J, 3) [u, v, confidence]
        msg.people.append(Person2D(id=person.person_id, score=float(person.score), u=kp[:, 0].tolist(),
                                   v=kp[:, 1].tolist(), confidence=kp[:, 2].tolist()))
    return msg


# -- ROS4HRI input: hri_msgs/Skeleton2D per body (REP-155) -> one Person2DArray per image stamp ------------------
# REP-155 2D skeleton producers (hri_body_detect, hri_fullbody, ...) publish one hri_msgs/Skeleton2D per body
# on /humans/bodies/<bodyID>/skeleton2d and the body ids on /humans/bodies/tracked (hri_msgs/IdsList). A
# Skeleton2D holds 18 NormalizedPointOfInterest2D (x, y in [0, 1] of the image width and height, (0, 0) the
# image's top-left corner; c confidence) in the order of its constants (NOSE = 0, NECK = 1,
# RIGHT_SHOULDER = 2, ..., LEFT_EYE = 14, RIGHT_EYE = 15, LEFT_EAR = 16, RIGHT_EAR = 17): exactly COCO18.
# The node lifts one keypoint message per image, so the bodies of one stamp are gathered (SkeletonBatcher)
# and handed on as one Person2DArray (coco18, pixels, body ids as person ids). hri_msgs is not on PyPI
# (it comes from a ROS workspace), so it is imported only when keypoints_input asks for it, and its
# absence is a start-up error (require_hri_msgs). The conversion and the batching are pure (tested with
# stand-in objects); HriSkeletonInput is the rclpy glue.
HRI_JOINT_SET = COCO18
HRI_SKELETON_POINTS = COCO18.num_joints  # 18
TRACKED_TOPIC = "/humans/bodies/tracked"
SKELETON_TOPIC = "/humans/bodies/{body_id}/skeleton2d"


class MissingDependency(RuntimeError):
    """An option needs a package that is not installed (said at start-up, with how to get it)."""


def require_hri_msgs() -> Any:
    """Import and return ``hri_msgs.msg``, or raise :class:`MissingDependency` saying how to install it."""
    try:
        import hri_msgs.msg as hri
    except ImportError as exc:
        raise MissingDependency(
            "keypoints_input:=hri_skeleton2d needs the ROS4HRI message package hri_msgs, which is not importable "
            f"({exc}); it is not on PyPI: install ros-$ROS_DISTRO-hri-msgs (or build github.com/ros4hri/hri_msgs) "
            "and source that workspace, or use keypoints_input:=person2d_array") from None
    return hri


def keypoints_from_skeleton2d(points: Sequence[Any], width: int, height: int) -> np.ndarray:
    """``Skeleton2D.skeleton`` (18 points with ``x``, ``y`` normalised, ``c``) -> (18, 3) ``[u, v, conf]`` px.

    ``u = x * width - 0.5``: normalised 0 is the image's left *edge*, and in this project's pixel
    convention the centre of pixel k is at k (so the edge is at -0.5). COCO-18 order is kept (the
    node maps it to H36M-17 with the ``coco18`` rules). Non-finite values pass through; the node's
    input checks turn them into missing joints.
    """
    if len(points) != HRI_SKELETON_POINTS:
        raise ValueError(f"hri_msgs/Skeleton2D must hold {HRI_SKELETON_POINTS} skeleton points (COCO-18), "
                         f"got {len(points)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive to de-normalise Skeleton2D points, got {width}x{height}")
    xyc = np.array([[float(p.x), float(p.y), float(p.c)] for p in points], dtype=np.float64)  # (18, 3)
    return np.column_stack([xyc[:, 0] * width - 0.5, xyc[:, 1] * height - 0.5, xyc[:, 2]])


@dataclass
class BodyBatch:
    """The bodies seen in one image: ``keypoints[body_id]`` (18, 3) px, ``frame_id`` of the first one."""

    stamp_ns: int
    frame_id: str
    keypoints: dict[str, np.ndarray] = field(default_factory=dict)


class SkeletonBatcher:
    """Gathers per-body skeletons into one batch per image stamp.

    A stamp is complete once every tracked body has reported for it (no added latency in the usual
    case). A body that skips a frame cannot hold it back: a newer stamp flushes every older one, and at
    most ``max_pending`` stamps wait. Batches come out in stamp order. Not thread-safe.
    """

    def __init__(self, max_pending: int = 10) -> None:
        self.max_pending = max_pending
        self.tracked: frozenset[str] = frozenset()
        self._pending: dict[int, BodyBatch] = {}

    def set_tracked(self, body_ids: Iterable[str]) -> list[BodyBatch]:
        self.tracked = frozenset(body_ids)
        return self._complete()

    def add(self, body_id: str, stamp_ns: int, frame_id: str, keypoints_px: np.ndarray) -> list[BodyBatch]:
        batch = self._pending.setdefault(stamp_ns, BodyBatch(stamp_ns, frame_id))
        batch.keypoints[body_id] = keypoints_px
        out = [self._pending.pop(s) for s in sorted(self._pending) if s < stamp_ns]  # older ones: no more coming
        while len(self._pending) > self.max_pending:
            out.append(self._pending.pop(min(self._pending)))
        return out + self._complete()

    def _complete(self) -> list[BodyBatch]:
        done = [s for s in sorted(self._pending) if self.tracked and self.tracked <= set(self._pending[s].keypoints)]
        return [self._pending.pop(s) for s in done]


def person_array_msg(batch: BodyBatch) -> Person2DArray:
    """A :class:`BodyBatch` -> ``Person2DArray`` (skeleton coco18; score = mean confidence of the present
    joints, since Skeleton2D carries no body score)."""
    header = Header(frame_id=batch.frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(batch.stamp_ns, 1_000_000_000)
    people = []
    for body_id in sorted(batch.keypoints):
        kp = batch.keypoints[body_id]
        conf = kp[:, 2][np.isfinite(kp[:, 2]) & (kp[:, 2] > 0)]
        people.append(PersonKeypoints(body_id, float(np.clip(conf.mean(), 0, 1)) if conf.size else 0.0, kp))
    return keypoints_msg(header, HRI_JOINT_SET.name, people)


class HriSkeletonInput:
    """Subscribes to ``/humans/bodies/tracked`` and each tracked body's ``skeleton2d``; hands one
    ``Person2DArray`` per image stamp to ``on_keypoints``.

    ``image_size(frame_id)`` gives the (width, height) the normalised points are scaled by (from the
    camera's CameraInfo), or None when unknown: such a skeleton is dropped and reported via
    ``report(reason, message)``.
    """

    def __init__(self, node: Any, on_keypoints: Callable[[Any], None],
                 image_size: Callable[[str], tuple[int, int] | None], report: Callable[[str, str], None],
                 qos: Any) -> None:
        hri = require_hri_msgs()
        self._node, self._on_keypoints, self._image_size, self._report = node, on_keypoints, image_size, report
        self._qos, self._stamp_ns, self._skeleton_type = qos, stamp_ns, hri.Skeleton2D
        self._batcher = SkeletonBatcher()
        self._subscriptions: dict[str, Any] = {}
        node.create_subscription(hri.IdsList, TRACKED_TOPIC, self._on_tracked, qos)

    def _on_tracked(self, msg: Any) -> None:
        ids = set(msg.ids)
        for gone in set(self._subscriptions) - ids:
            self._node.destroy_subscription(self._subscriptions.pop(gone))
        for new in ids - set(self._subscriptions):
            try:
                self._subscriptions[new] = self._node.create_subscription(
                    self._skeleton_type, SKELETON_TOPIC.format(body_id=new),
                    lambda m, body_id=new: self._on_skeleton(body_id, m), self._qos)
            except Exception as exc:  # noqa: BLE001 - an id that makes no valid topic name must not stop the node
                self._report("hri_bad_body_id", f"body id {new!r} on {TRACKED_TOPIC} gives no valid topic: {exc}")
        self._emit(self._batcher.set_tracked(ids))

    def _on_skeleton(self, body_id: str, msg: Any) -> None:
        size = self._image_size(msg.header.frame_id)
        if size is None:
            self._report("hri_no_image_size", f"Skeleton2D of body {body_id!r} in frame {msg.header.frame_id!r}: no "
                         "CameraInfo with width/height for that frame yet, so its normalised points cannot be scaled")
            return
        try:
            keypoints = keypoints_from_skeleton2d(msg.skeleton, *size)
        except ValueError as exc:
            self._report("hri_bad_skeleton", f"Skeleton2D of body {body_id!r} skipped: {exc}")
            return
        self._emit(self._batcher.add(body_id, self._stamp_ns(msg.header), msg.header.frame_id, keypoints))

    def _emit(self, batches: list[BodyBatch]) -> None:
        for batch in batches:
            self._on_keypoints(person_array_msg(batch))

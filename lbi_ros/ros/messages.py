"""Messages <-> core types for the lifter node: 2D people in, camera intrinsics, 3D skeletons out.

Every field from the wire is checked here; problems raise :class:`MessageError` with a stable
``reason`` (a diagnostics counter name) and a message saying how to fix the publisher.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from lbi_ros.geometry import Intrinsics
from lbi_ros.input_checks import PersonKeypoints
from lbi_ros.msg import Person2DArray, Skeleton3D, Skeleton3DArray
from lbi_ros.pipeline import PersonLift
from lbi_ros.skeleton import JOINT_SETS

# Distortion models whose coefficients OpenCV's undistortPoints understands.
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")


class MessageError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def people_from_msg(msg: Person2DArray) -> tuple[str, list[PersonKeypoints]]:
    """Return (joint set name, people) after checking the topology and every array length."""
    joint_set = JOINT_SETS.get(msg.skeleton)
    if joint_set is None:
        raise MessageError("unknown_skeleton", f"skeleton {msg.skeleton!r} is unknown; publish one of "
                           f"{sorted(JOINT_SETS)} with matching joint_names")
    names = tuple(msg.joint_names)
    if names and names != joint_set.joint_names:
        if len(names) != joint_set.num_joints:
            raise MessageError("joint_count_mismatch", f"{len(names)} joint_names for skeleton {msg.skeleton!r}, "
                               f"which has {joint_set.num_joints}: {list(joint_set.joint_names)}")
        raise MessageError("joint_names_mismatch", f"joint_names do not match skeleton {msg.skeleton!r}: expected "
                           f"{list(joint_set.joint_names)}, got {list(names)}")
    count = joint_set.num_joints
    people = []
    for index, person in enumerate(msg.people):
        lengths = {len(person.u), len(person.v), len(person.confidence)}
        if lengths != {count}:
            raise MessageError("joint_count_mismatch", f"person {index} ({person.id!r}) has u/v/confidence of "
                               f"lengths {len(person.u)}/{len(person.v)}/{len(person.confidence)}; "
                               f"skeleton {msg.skeleton!r} needs {count} each")
        keypoints = np.column_stack([np.asarray(person.u, np.float64), np.asarray(person.v, np.float64),
                                     np.asarray(person.confidence, np.float64)])
        people.append(PersonKeypoints(person.id, float(person.score), keypoints))
    return joint_set.name, people


class CameraModel:
    """Intrinsics and distortion from a CameraInfo, checked once per distinct message."""

    def __init__(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64)
        if k.size != 9 or not np.all(np.isfinite(k)):
            raise MessageError("bad_camera_info", f"CameraInfo.k must hold 9 finite numbers, got {list(k)}")
        if k[0] <= 0 or k[4] <= 0:
            raise MessageError("bad_camera_info", f"CameraInfo focal lengths must be positive, got fx={k[0]}, "
                               f"fy={k[4]}: is the camera calibrated?")
        self.intrinsics = Intrinsics.from_matrix(k)
        self.width, self.height = int(msg.width), int(msg.height)
        coefficients = np.asarray(msg.d, dtype=np.float64)
        self.distortion: np.ndarray | None = None
        if coefficients.size and np.any(coefficients != 0):
            if msg.distortion_model not in DISTORTION_MODELS:
                raise MessageError("unsupported_distortion", f"distortion model {msg.distortion_model!r} is not "
                                   f"supported (use {DISTORTION_MODELS} or rectified images, D = 0)")
            if not np.all(np.isfinite(coefficients)):
                raise MessageError("bad_camera_info", "CameraInfo.d holds non-finite coefficients")
            self.distortion = coefficients

    def check_image(self, width: int, height: int) -> None:
        if (self.width, self.height) != (0, 0) and (self.width, self.height) != (width, height):
            raise MessageError("camera_info_size_mismatch", f"CameraInfo is for {self.width}x{self.height} but the "
                               f"image is {width}x{height}: intrinsics would be wrong")

    def undistort(self, keypoints_px: np.ndarray) -> np.ndarray:
        """(J, 3) [u, v, conf] -> the same with (u, v) moved to the ideal pinhole image (no-op without D)."""
        if self.distortion is None or not len(keypoints_px):
            return keypoints_px
        import cv2

        out = keypoints_px.copy()
        present = out[:, 2] > 0
        if present.any():
            k = self.intrinsics.matrix()
            points = out[present, :2].reshape(-1, 1, 2)
            out[present, :2] = cv2.undistortPoints(points, k, self.distortion, P=k).reshape(-1, 2)
        return out


def skeletons_msg(header: Header, joint_names: Sequence[str], parents: Sequence[int],
                  people: Sequence[PersonLift]) -> Skeleton3DArray:
    msg = Skeleton3DArray(header=header, skeleton="h36m17", joint_names=list(joint_names),
                          parents=[int(p) for p in parents])
    for person in people:
        skeleton = Skeleton3D(id=person.person_id, score=float(person.score))
        skeleton.positions = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in person.joints_cam_m]
        skeleton.confidence = [float(c) for c in person.confidence]
        skeleton.uncertainty = [float(u) for u in person.uncertainty_m]
        skeleton.valid = [bool(v) for v in person.valid]
        skeleton.root = Point(x=float(person.root_cam_m[0]), y=float(person.root_cam_m[1]),
                              z=float(person.root_cam_m[2]))
        skeleton.root_depth_std = float(person.root_depth_std_m)
        msg.skeletons.append(skeleton)
    return msg

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
from lbi_ros.input_checks import PersonKeypoints, Problem
from lbi_ros.msg import Person2DArray, Skeleton3D, Skeleton3DArray
from lbi_ros.pipeline import PersonLift
from lbi_ros.skeleton import JOINT_SETS

# Distortion models we undistort keypoints for, with the coefficient counts OpenCV accepts for each
# (plumb_bob has 5 in ROS, rational_polynomial 8; equidistant is the fisheye model, k1..k4).
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {"plumb_bob": (4, 5, 8, 12, 14),
                                                 "rational_polynomial": (8, 12, 14), "equidistant": (4,)}
# A message with more people than this is not read at all: no detector reports that many in one
# image, and converting them would cost the node its latency budget (max_people caps the lifted ones).
MAX_PEOPLE_PER_MESSAGE = 1000


class MessageError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def people_from_msg(msg: Person2DArray) -> tuple[str, list[PersonKeypoints], list[Problem]]:
    """Return (joint set name, people, problems) after checking the topology and every array length.

    A topology problem (unknown skeleton, joint_names that do not match it) rejects the whole message:
    no person's joints can be trusted. A person whose arrays have the wrong length is skipped and
    reported; the others are kept.
    """
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
        self.distortion: np.ndarray | None = None
        if coefficients.size and np.any(coefficients != 0):
            if msg.distortion_model not in DISTORTION_MODELS:
                raise MessageError("unsupported_distortion", f"distortion model {msg.distortion_model!r} is not "
                                   f"supported (use one of {sorted(DISTORTION_MODELS)} or rectified images, D = 0)")
            if coefficients.size not in DISTORTION_MODELS[msg.distortion_model]:
                raise MessageError("bad_camera_info", f"{msg.distortion_model} needs "
                                   f"{DISTORTION_MODELS[msg.distortion_model]} coefficients in D, got {coefficients.size}")
            if not np.all(np.isfinite(coefficients)):
                raise MessageError("bad_camera_info", "CameraInfo.d holds non-finite coefficients")
            self.distortion = coefficients

    def check_image(self, width: int, height: int) -> None:
        if (self.width, self.height) != (0, 0) and (self.width, self.height) != (width, height):
            raise MessageError("camera_info_size_mismatch", f"CameraInfo is for {self.width}x{self.height} but the "
                               f"image is {width}x{height}: intrinsics would be wrong")

    def undistort(self, keypoints_px: np.ndarray) -> np.ndarray:
        """(J, 3) [u, v, conf] -> the same with (u, v) moved to the ideal pinhole image (no-op without D).

        Only present joints (conf > 0) are moved; missing ones keep their (ignored) coordinates.
        """
        if self.distortion is None or not len(keypoints_px):
            return keypoints_px
        import cv2

        out = keypoints_px.copy()
        present = (out[:, 2] > 0) & np.all(np.isfinite(out[:, :2]), axis=1)
        if present.any():
            k = self.intrinsics.matrix()
            points = out[present, :2].reshape(-1, 1, 2)
            if self.model == "equidistant":
                moved = cv2.fisheye.undistortPoints(points, k, self.distortion, P=k)
            else:
                moved = cv2.undistortPoints(points, k, self.distortion, P=k)
            out[present, :2] = moved.reshape(-1, 2)
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

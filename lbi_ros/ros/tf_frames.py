"""Skeletons -> REP-155 TF frames (``tf2_msgs/TFMessage``) parented to the camera optical frame.

Frames per person ``<id>`` (REP-155 "human body" naming, ROS4HRI): ``body_<id>`` at the pelvis,
oriented like REP-103 body frames (x forward out of the chest, y to the person's left, z up along
the spine), and, when enabled, one frame per joint (``l_wrist_<id>``, ``head_<id>``, ...) at the
joint position with the camera's orientation (a lifter gives positions, not joint rotations).

Person ids become part of frame names, so they are sanitised to ``[A-Za-z0-9_]`` (TF frame ids must
not contain ``/`` or spaces). The body orientation math is plain numpy in :func:`body_rotation`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import TransformStamped
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from lbi_ros.pipeline import PersonLift
from lbi_ros.skeleton import H36M17, REP155_FRAME_NAMES

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
PELVIS, THORAX = H36M17.index("pelvis"), H36M17.index("thorax")
L_HIP, R_HIP = H36M17.index("l_hip"), H36M17.index("r_hip")


def frame_suffix(person_id: str) -> str:
    """``'person 7/a'`` -> ``'person_7_a'``; empty ids become ``'unknown'``."""
    return _UNSAFE.sub("_", person_id) or "unknown"


def body_rotation(joints_cam_m: np.ndarray) -> np.ndarray:
    """(17, 3) camera-frame joints -> (3, 3) rotation whose columns are the body x, y, z axes.

    z = pelvis -> thorax (up the spine), y = r_hip -> l_hip made orthogonal to z (the person's left),
    x = y cross z (forward). Falls back to the camera orientation if the hips or spine degenerate.
    """
    up = joints_cam_m[THORAX] - joints_cam_m[PELVIS]
    left = joints_cam_m[L_HIP] - joints_cam_m[R_HIP]
    if not (np.all(np.isfinite(up)) and np.all(np.isfinite(left))) or np.linalg.norm(up) < 1e-6:
        return np.eye(3)
    z = up / np.linalg.norm(up)
    y = left - np.dot(left, z) * z
    if np.linalg.norm(y) < 1e-6:
        return np.eye(3)
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


def rotation_to_quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """(3, 3) proper rotation -> (x, y, z, w), numerically stable branch on the largest component."""
    trace = float(np.trace(r))
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 1e-12))
        q = np.empty(3)
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
        w = (r[k, j] - r[j, k]) / s
        x, y, z = q
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    return float(x / norm), float(y / norm), float(z / norm), float(w / norm)


def _transform(header: Header, child: str, xyz: np.ndarray, quat: tuple[float, float, float, float]):
    t = TransformStamped()
    t.header = header
    t.child_frame_id = child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (float(v) for v in xyz)
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = quat
    return t


def skeleton_transforms(header: Header, people: Sequence[PersonLift], joint_frames: bool = True) -> TFMessage:
    """One TFMessage with ``body_<id>`` (and joint frames) for every person; parent = ``header.frame_id``.

    Joints that were missing in 2D (``valid`` False) get no frame: TF consumers cannot tell a guessed
    frame from a measured one.
    """
    message = TFMessage()
    identity = (0.0, 0.0, 0.0, 1.0)
    for person in people:
        suffix = frame_suffix(person.person_id)
        body_q = rotation_to_quaternion(body_rotation(person.joints_cam_m))
        message.transforms.append(_transform(header, f"body_{suffix}", person.joints_cam_m[PELVIS], body_q))
        if not joint_frames:
            continue
        for j, stem in enumerate(REP155_FRAME_NAMES):
            if j == PELVIS or not person.valid[j]:
                continue
            message.transforms.append(_transform(header, f"{stem}_{suffix}", person.joints_cam_m[j], identity))
    return message

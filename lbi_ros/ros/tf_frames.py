"""Skeletons -> REP-155 TF frames (``tf2_msgs/TFMessage``).

Frames per person ``<id>`` (REP-155 "Body Frames", ROS4HRI naming):

* ``body_<id>``: parent = the camera frame of the image (``header.frame_id``), origin at the pelvis
  (mid-hips), oriented like REP-103 body frames (x forward out of the chest, y to the person's left,
  z up along the spine);
* when enabled, one frame per joint that REP-155's kinematic model names (``waist``, ``torso``,
  ``head``, ``{l,r}_{shoulder,elbow,wrist,hip,knee,ankle}``, see
  :data:`lbi_ros.skeleton.REP155_FRAME_NAMES`), suffixed ``_<id>`` and parented to ``body_<id>`` as
  REP-155 requires, at the joint position with the body frame's orientation (a lifter gives
  positions, not joint rotations).

Person ids become part of frame names, so they are sanitised to ``[A-Za-z0-9_]`` (TF frame ids must
not contain ``/`` or spaces). An id that sanitising changes also gets a short hash of the original id
(``'person 7/a'`` -> ``person_7_a_<8 hex>``), so two ids that differ only in unsafe characters never
share frames, and a person keeps the same frame name in every frame. The body orientation math is plain
numpy in :func:`body_rotation`.
"""

from __future__ import annotations

import hashlib
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
# (joint, REP-155 stem) of the joint frames under body_<id>: built once, not per frame
_JOINT_FRAMES = tuple((j, stem) for j, stem in enumerate(REP155_FRAME_NAMES) if stem is not None and j != PELVIS)
_IDENTITY = (0.0, 0.0, 0.0, 1.0)


def frame_suffix(person_id: str) -> str:
    """``'a_1'`` -> ``'a_1'``; ``'person 7/a'`` -> ``'person_7_a_<8 hex of sha1(id)>'``; ``''`` -> ``'unknown_<hex>'``.

    Deterministic (the same id always gets the same suffix, whoever else is in the frame) and
    collision-free between ids that only differ in the characters sanitising replaces.
    """
    safe = _UNSAFE.sub("_", person_id)
    if safe == person_id and safe:
        return safe
    return f"{safe or 'unknown'}_{_digest(person_id)[:8]}"


def _digest(person_id: str) -> str:
    return hashlib.sha1(person_id.encode("utf-8", "surrogatepass")).hexdigest()


def frame_suffixes(person_ids: Sequence[str]) -> list[str]:
    """:func:`frame_suffix` for every person of a frame, guaranteed distinct for distinct ids.

    A clash left after hashing (an id that is literally another id's sanitised-plus-hash form, which
    only a deliberate id can be) is resolved by giving the later of the two the full 40-hex hash.
    """
    suffixes = [frame_suffix(pid) for pid in person_ids]
    owners: dict[str, str] = {}
    for k, (pid, suffix) in enumerate(zip(person_ids, suffixes, strict=True)):
        if owners.setdefault(suffix, pid) != pid:
            suffixes[k] = f"{_UNSAFE.sub('_', pid) or 'unknown'}_{_digest(pid)}"
    return suffixes


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


def _transform(header: Header, child: str, xyz: Sequence[float], quat: tuple[float, float, float, float]):
    """``xyz``: Python floats (a ``tolist()`` row: one conversion per frame, not three ``float()`` per joint)."""
    t = TransformStamped(header=header, child_frame_id=child)
    translation, rotation = t.transform.translation, t.transform.rotation
    translation.x, translation.y, translation.z = xyz
    rotation.x, rotation.y, rotation.z, rotation.w = quat
    return t


def skeleton_transforms(header: Header, people: Sequence[PersonLift], joint_frames: bool = True) -> TFMessage:
    """One TFMessage with ``body_<id>`` (parent ``header.frame_id``) and, if ``joint_frames``, the REP-155
    joint frames of every person (parent ``body_<id>``), all at the image stamp.

    Joints that were missing in 2D (``valid`` False) get no frame: TF consumers cannot tell a guessed
    frame from a measured one. H36M joints REP-155 has no link for get no frame either (the typed
    Skeleton3DArray carries every joint).
    """
    message = TFMessage()
    transforms = message.transforms
    for person, suffix in zip(people, frame_suffixes([p.person_id for p in people]), strict=True):
        body = f"body_{suffix}"
        rotation = body_rotation(person.joints_cam_m)
        pelvis = person.joints_cam_m[PELVIS]
        transforms.append(_transform(header, body, pelvis.tolist(), rotation_to_quaternion(rotation)))
        if not joint_frames:
            continue
        joint_header = Header(stamp=header.stamp, frame_id=body)
        in_body = ((person.joints_cam_m - pelvis) @ rotation).tolist()  # (J, 3) rows: R^T (p_j - p_pelvis)
        valid = np.asarray(person.valid, bool).tolist()
        transforms.extend(_transform(joint_header, f"{stem}_{suffix}", in_body[j], _IDENTITY)
                          for j, stem in _JOINT_FRAMES if valid[j])
    return message

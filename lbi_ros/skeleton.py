"""Joint sets (H36M-17, COCO-17, COCO-18 / ROS4HRI, MediaPipe-33, MPI-INF-3DHP-17) and mappings to H36M-17.

H36M-17 is the project's internal joint set: the model reads and predicts these 17 joints, in the order of
the VideoPose3D Human3.6M files. Every other set is mapped to it with :func:`map_to_h36m`, which works on
``(..., J_src, 3)`` arrays of ``[u, v, confidence]`` (pixels or any 2D/3D coordinates: the last axis is
``coords..., confidence``).

Mapping rules. Each H36M joint is defined by an ordered list of *alternatives*; an alternative is an affine
combination ``sum_k w_k * source_k`` (weights sum to 1) of source joints. The first alternative whose
sources are all present (confidence > 0) is used; its confidence is the **minimum** of its sources'
confidences. If no alternative is complete the joint is *missing*: confidence 0 and coordinates 0.

Rules for joints COCO-style detectors lack (documented approximations, chosen to match how the
synthetic training data defines the same joints, see ``lbi_ros.mocap.clips``):

* ``pelvis``  = mid-hips.
* ``thorax``  = mid-shoulders (COCO-18/ROS4HRI: fallback to its ``neck`` joint).
* ``spine``   = midpoint of pelvis and thorax, i.e. ``0.25 * (l_hip + r_hip + l_shoulder + r_shoulder)``.
* ``neck_nose`` (H36M joint 9 sits at nose height on the head axis) = midpoint of the nose and the
  mid-ears; fallbacks: nose alone, then mid-ears.
* ``head`` (H36M joint 10 is the top of the head) = mid-ears extended away from the mid-shoulders by 2/3 of
  the shoulder-to-ear distance: ``mid_ears + (2/3) * (mid_ears - mid_shoulders)``. Anthropometry: ears sit
  about 15 cm above the shoulder line and the vertex about 10-15 cm above the ears; 2/3 puts the point
  slightly below the vertex, where the H36M head marker is. Fallbacks: mid-eyes then nose instead of
  mid-ears.

Left/right are the person's own left and right. The flip permutation ``flip_index`` maps a joint to its
mirror joint (for horizontal-flip augmentation). ``REP155_FRAME_NAMES`` gives ROS TF child-frame stems
per H36M joint (REP-155 "Kinematic model of the human"; the ROS layer appends ``_<bodyID>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Joint sets
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointSet:
    """A named list of joints with an optional kinematic tree.

    ``parents[j]`` is the parent index of joint j (-1 for the root) or the whole tuple is empty when the set
    has no tree (2D detector layouts). ``flip_index[j]`` is the index of j's mirror joint (itself for
    midline joints).
    """

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    parents: tuple[int, ...] = ()
    edges: tuple[tuple[int, int], ...] = ()  # drawing edges for sets without a tree
    flip_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = self.joint_names
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate joint names")
        if self.parents and len(self.parents) != len(names):
            raise ValueError(f"{self.name}: {len(self.parents)} parents for {len(names)} joints")
        perm = list(range(len(names)))
        for a, b in self.flip_pairs:
            ia, ib = names.index(a), names.index(b)
            perm[ia], perm[ib] = ib, ia
        object.__setattr__(self, "flip_index", tuple(perm))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, name: str) -> int:
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"{self.name} has no joint {name!r}; joints: {list(self.joint_names)}") from None

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) pairs of the tree, or the drawing edges for sets without a tree."""
        if self.parents:
            return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)
        return self.edges


H36M17 = JointSet(
    name="h36m17",
    joint_names=(
        "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
        "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    ),  # fmt: skip
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    flip_pairs=(
        ("r_hip", "l_hip"), ("r_knee", "l_knee"), ("r_ankle", "l_ankle"),
        ("r_shoulder", "l_shoulder"), ("r_elbow", "l_elbow"), ("r_wrist", "l_wrist"),
    ),  # fmt: skip
)
NUM_JOINTS = H36M17.num_joints
ROOT_INDEX = 0
H36M_LEFT = (4, 5, 6, 11, 12, 13)
H36M_RIGHT = (1, 2, 3, 14, 15, 16)

COCO17 = JointSet(
    name="coco17",
    joint_names=(
        "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
        "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    ),  # fmt: skip
    flip_pairs=(
        ("l_eye", "r_eye"), ("l_ear", "r_ear"), ("l_shoulder", "r_shoulder"), ("l_elbow", "r_elbow"),
        ("l_wrist", "r_wrist"), ("l_hip", "r_hip"), ("l_knee", "r_knee"), ("l_ankle", "r_ankle"),
    ),  # fmt: skip
    edges=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    ),  # fmt: skip
)

# COCO-18 in the order of ROS4HRI hri_msgs/Skeleton2D (REP-155). Note that its eyes/ears come left-first,
# unlike OpenPose's COCO-18 (right-first).
COCO18 = JointSet(
    name="coco18",
    joint_names=(
        "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
        "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "l_eye", "r_eye", "l_ear", "r_ear",
    ),  # fmt: skip
    flip_pairs=(
        ("r_shoulder", "l_shoulder"), ("r_elbow", "l_elbow"), ("r_wrist", "l_wrist"), ("r_hip", "l_hip"),
        ("r_knee", "l_knee"), ("r_ankle", "l_ankle"), ("l_eye", "r_eye"), ("l_ear", "r_ear"),
    ),  # fmt: skip
    edges=(
        (0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
        (11, 12), (12, 13), (0, 14), (0, 15), (14, 16), (15, 17),
    ),  # fmt: skip
)

_MP_SIDES = (
    "eye_inner", "eye", "eye_outer", "ear", "mouth", "shoulder", "elbow", "wrist", "pinky", "index",
    "thumb", "hip", "knee", "ankle", "heel", "foot_index",
)  # fmt: skip
MEDIAPIPE33 = JointSet(
    name="mediapipe33",
    joint_names=(
        "nose", "l_eye_inner", "l_eye", "l_eye_outer", "r_eye_inner", "r_eye", "r_eye_outer", "l_ear",
        "r_ear", "l_mouth", "r_mouth", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
        "r_wrist", "l_pinky", "r_pinky", "l_index", "r_index", "l_thumb", "r_thumb", "l_hip", "r_hip",
        "l_knee", "r_knee", "l_ankle", "r_ankle", "l_heel", "r_heel", "l_foot_index", "r_foot_index",
    ),  # fmt: skip
    flip_pairs=tuple((f"l_{s}", f"r_{s}") for s in _MP_SIDES),
    edges=(
        (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25),
        (25, 27), (24, 26), (26, 28), (27, 29), (29, 31), (28, 30), (30, 32), (0, 2), (0, 5), (2, 7), (5, 8),
    ),  # fmt: skip
)

# MPI-INF-3DHP's 17 evaluation joints (test-set ``annot3`` / ``univ_annot3`` order).
MPI_INF_3DHP17 = JointSet(
    name="mpi_inf_3dhp17",
    joint_names=(
        "head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
        "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head",
    ),  # fmt: skip
    parents=(16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    flip_pairs=(
        ("r_shoulder", "l_shoulder"), ("r_elbow", "l_elbow"), ("r_wrist", "l_wrist"), ("r_hip", "l_hip"),
        ("r_knee", "l_knee"), ("r_ankle", "l_ankle"),
    ),  # fmt: skip
)

JOINT_SETS: dict[str, JointSet] = {
    js.name: js for js in (H36M17, COCO17, COCO18, MEDIAPIPE33, MPI_INF_3DHP17)
}


def _spelled_out(names: tuple[str, ...]) -> tuple[str, ...]:
    """``l_wrist`` -> ``left_wrist``, ``r_eye_inner`` -> ``right_eye_inner``; other names unchanged."""
    return tuple(f"left_{n[2:]}" if n.startswith("l_") else f"right_{n[2:]}" if n.startswith("r_") else n
                 for n in names)


# Other spellings of each set's joint names that ``joint_names`` in a message may use (compared
# case-insensitively, whole lists only). The spelled-out form (``left_wrist``) is accepted for every set;
# for COCO-17 it is exactly the COCO dataset's own keypoint names (``nose``, ``left_eye``, ...,
# ``right_ankle``), and for MediaPipe-33 MediaPipe's PoseLandmark names (``mouth_left``, ``left_pinky``...).
JOINT_NAME_ALIASES: dict[str, tuple[tuple[str, ...], ...]] = {
    name: (_spelled_out(js.joint_names),) for name, js in JOINT_SETS.items()
}
JOINT_NAME_ALIASES["mediapipe33"] = (tuple(
    {"left_mouth": "mouth_left", "right_mouth": "mouth_right"}.get(n, n)
    for n in _spelled_out(MEDIAPIPE33.joint_names)),)
COCO_DATASET_KEYPOINT_NAMES: tuple[str, ...] = JOINT_NAME_ALIASES["coco17"][0]


def accepted_joint_names(joint_set: JointSet) -> tuple[tuple[str, ...], ...]:
    """Every joint-name list that declares ``joint_set``: its own names first, then its aliases."""
    return (joint_set.joint_names, *JOINT_NAME_ALIASES.get(joint_set.name, ()))


def names_match(joint_set: JointSet, names: tuple[str, ...] | list[str]) -> bool:
    """True if ``names`` (case-insensitive) are ``joint_set``'s joint names or one of their aliases, in order."""
    lowered = tuple(n.lower() for n in names)
    return any(lowered == accepted for accepted in accepted_joint_names(joint_set))


def joint_set_from_names(names: tuple[str, ...] | list[str]) -> JointSet | None:
    """The one joint set whose names (or aliases) are ``names``; None if none or several match."""
    found = [js for js in JOINT_SETS.values() if names_match(js, names)]
    return found[0] if len(found) == 1 else None


# REP-155 TF link names per H36M joint (None: REP-155's human model has no link there, so no TF frame).
# REP-155 "Kinematic Model of the Human" names the links body (mid-hips), waist, torso, head (with
# r_/y_/p_head in between), {l,r}_{y,p,}_shoulder, {l,r}_elbow, {l,r}_wrist, {l,r}_{y,p,}_hip,
# {l,r}_knee, {l,r}_ankle. H36M's spine is the waist, its thorax the torso, and its nose-height point on
# the head axis ("neck_nose") is the head: REP-155 asks that head_<id> be consistent with the face frame,
# which sits at the sellion (between the eyes). H36M's top-of-head point has no REP-155 link.
REP155_FRAME_NAMES: tuple[str | None, ...] = (
    "body", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "waist", "torso", "head", None,
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# Mappings to H36M-17
# ---------------------------------------------------------------------------------------------------------

Alternative = tuple[tuple[str, float], ...]  # ((source joint name, weight), ...), weights sum to 1


def _mid(a: str, b: str) -> Alternative:
    return ((a, 0.5), (b, 0.5))


def _copy(a: str) -> tuple[Alternative, ...]:
    return (((a, 1.0),),)


def _head_top(pair: tuple[str, str] | str) -> Alternative:
    # head = m + k (m - s), m = reference point (mid-ears / mid-eyes / nose), s = mid-shoulders, k = 2/3
    k = 2.0 / 3.0
    ref = [(pair, 1.0)] if isinstance(pair, str) else [(pair[0], 0.5), (pair[1], 0.5)]
    return tuple((n, w * (1 + k)) for n, w in ref) + (("l_shoulder", -k / 2), ("r_shoulder", -k / 2))


def _coco_like_rules(extra_thorax: tuple[Alternative, ...] = ()) -> dict[str, tuple[Alternative, ...]]:
    """Rules for sets with COCO's limb joint names (COCO-17, COCO-18, MediaPipe-33)."""
    rules: dict[str, tuple[Alternative, ...]] = {
        "pelvis": (_mid("l_hip", "r_hip"),),
        "thorax": (_mid("l_shoulder", "r_shoulder"), *extra_thorax),
        "spine": ((("l_hip", 0.25), ("r_hip", 0.25), ("l_shoulder", 0.25), ("r_shoulder", 0.25)),),
        "neck_nose": (
            (("nose", 0.5), ("l_ear", 0.25), ("r_ear", 0.25)),
            (("nose", 1.0),),
            _mid("l_ear", "r_ear"),
        ),
        "head": (_head_top(("l_ear", "r_ear")), _head_top(("l_eye", "r_eye")), _head_top("nose")),
    }
    for side in ("l", "r"):
        for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
            rules[f"{side}_{part}"] = _copy(f"{side}_{part}")
    return rules


@dataclass(frozen=True)
class JointMapping:
    """Compiled mapping from a source joint set to H36M-17.

    ``alternatives[j]`` is a tuple of ``(source_indices, weights)`` pairs (numpy arrays), tried in order.
    """

    source: JointSet
    alternatives: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]

    def describe(self) -> dict[str, list[str]]:
        """Human-readable rules: H36M joint -> ['0.5*l_hip + 0.5*r_hip', ...]."""
        out = {}
        for name, alts in zip(H36M17.joint_names, self.alternatives, strict=True):
            out[name] = [
                " + ".join(f"{w:.3g}*{self.source.joint_names[i]}" for i, w in zip(idx, ws, strict=True)) for idx, ws in alts
            ]
        return out


def _compile(source: JointSet, rules: dict[str, tuple[Alternative, ...]]) -> JointMapping:
    missing = [n for n in H36M17.joint_names if n not in rules]
    if missing:
        raise ValueError(f"mapping {source.name}->h36m17 leaves {missing} undefined")
    compiled = []
    for name in H36M17.joint_names:
        alts = []
        for alt in rules[name]:
            idx = np.array([source.index(n) for n, _ in alt], dtype=np.int64)
            w = np.array([w for _, w in alt], dtype=np.float64)
            if abs(w.sum() - 1.0) > 1e-9:
                raise ValueError(f"{source.name}->{name}: weights {w} do not sum to 1 (not affine)")
            alts.append((idx, w))
        compiled.append(tuple(alts))
    return JointMapping(source=source, alternatives=tuple(compiled))


_MPI_TO_H36M = {
    "pelvis": "pelvis", "r_hip": "r_hip", "r_knee": "r_knee", "r_ankle": "r_ankle", "l_hip": "l_hip",
    "l_knee": "l_knee", "l_ankle": "l_ankle", "spine": "spine", "thorax": "neck", "neck_nose": "head",
    "head": "head_top", "l_shoulder": "l_shoulder", "l_elbow": "l_elbow", "l_wrist": "l_wrist",
    "r_shoulder": "r_shoulder", "r_elbow": "r_elbow", "r_wrist": "r_wrist",
}  # fmt: skip

MAPPINGS: dict[str, JointMapping] = {
    "h36m17": _compile(H36M17, {n: _copy(n) for n in H36M17.joint_names}),
    "coco17": _compile(COCO17, _coco_like_rules()),
    "coco18": _compile(COCO18, _coco_like_rules(extra_thorax=_copy("neck"))),
    "mediapipe33": _compile(MEDIAPIPE33, _coco_like_rules()),
    "mpi_inf_3dhp17": _compile(MPI_INF_3DHP17, {k: _copy(v) for k, v in _MPI_TO_H36M.items()}),
}


def get_joint_set(name: str) -> JointSet:
    """Registry lookup: ``"h36m17"``, ``"coco17"``, ``"coco18"``, ``"mediapipe33"``, ``"mpi_inf_3dhp17"``."""
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}") from None


def map_to_h36m(keypoints: Any, source: str | JointSet) -> np.ndarray:
    """Map ``(..., J_src, C+1)`` keypoints ``[coords..., confidence]`` to H36M-17 ``(..., 17, C+1)``.

    A synthesized joint's confidence is the min of its sources' confidences; if any source of every
    alternative is missing (confidence <= 0 or non-finite coordinates), the joint is missing: confidence 0
    and coordinates 0. Returns float32 (float64 input stays float64).
    """
    name = source.name if isinstance(source, JointSet) else source
    if name not in MAPPINGS:
        raise KeyError(f"no mapping from {name!r} to h36m17; known: {sorted(MAPPINGS)}")
    mapping = MAPPINGS[name]
    kp = np.asarray(keypoints)
    if not np.issubdtype(kp.dtype, np.floating):
        kp = kp.astype(np.float32)
    n_src = mapping.source.num_joints
    if kp.ndim < 2 or kp.shape[-2] != n_src or kp.shape[-1] < 2:
        raise ValueError(f"{name} keypoints must have shape (..., {n_src}, C+1) with C >= 1, got {kp.shape}")
    coords, conf = kp[..., :-1], kp[..., -1]
    present = (conf > 0) & np.all(np.isfinite(coords), axis=-1)  # (..., J_src)
    coords = np.where(present[..., None], coords, 0.0)
    out = np.zeros(kp.shape[:-2] + (NUM_JOINTS, kp.shape[-1]), dtype=kp.dtype)
    filled = np.zeros(kp.shape[:-2] + (NUM_JOINTS,), dtype=bool)
    for j, alts in enumerate(mapping.alternatives):
        for idx, w in alts:
            ok = np.all(present[..., idx], axis=-1) & ~filled[..., j]  # (...)
            if not ok.any():
                continue
            value = np.einsum("...kc,k->...c", coords[..., idx, :], w.astype(coords.dtype))
            c = np.min(conf[..., idx], axis=-1)
            out[..., j, :-1] = np.where(ok[..., None], value, out[..., j, :-1])
            out[..., j, -1] = np.where(ok, c, out[..., j, -1])
            filled[..., j] |= ok
    return out


def flip_joints(joints: Any, joint_set: JointSet = H36M17) -> np.ndarray:
    """Swap left/right joints along axis -2 (the caller negates the mirrored coordinate)."""
    arr = np.asarray(joints)
    return arr[..., list(joint_set.flip_index), :]


# A standing person in H36M-17 order: metres, camera optical axes (x right, y down, z forward), pelvis at
# the origin, facing the camera. A reference pose for tests, benchmarks and known-output checks.
STANDING_POSE_M = np.array([
    [0, 0, 0], [-0.13, 0, 0], [-0.13, 0.45, 0], [-0.13, 0.88, 0], [0.13, 0, 0], [0.13, 0.45, 0],
    [0.13, 0.88, 0], [0, -0.25, 0], [0, -0.5, 0], [0, -0.6, -0.05], [0, -0.72, 0], [0.18, -0.48, 0],
    [0.2, -0.2, 0], [0.2, 0.05, 0], [-0.18, -0.48, 0], [-0.2, -0.2, 0], [-0.2, 0.05, 0],
], dtype=np.float32)  # fmt: skip
STANDING_POSE_M.flags.writeable = False

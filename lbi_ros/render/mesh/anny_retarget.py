"""Retarget H36M-17 mocap poses onto an Anny rest body, skin it (numpy LBS) and read the labels off it.

The label definitions and the public contract are documented in :mod:`lbi_ros.render.mesh.anny_body`.

Retargeting copies directions only: Anny keeps its own bone lengths. The 104 Anny bones are driven through
26 *drivers* (:data:`DRIVERS`); every other bone (pelvis, finger/toe/eye bones, the hands) moves rigidly with
its nearest driver ancestor. Rotations are global rotations from the rest pose, applied to whole subtrees
about the bone's head (forward kinematics), in this order:

1. pelvis (``root``): full frame (hips line exact, up = pelvis -> spine); translated so the pelvis label is
   at ``s * mocap pelvis``, ``s = chain(Anny rest) / chain(mocap)``, chain = mean (thigh + shin) +
   pelvis->spine + spine->thorax (= Anny height / estimated mocap person height);
2. spine: the chest frame (up = spine -> thorax, shoulders line) is slerped from the pelvis frame over
   ``spine05 .. spine01`` (1/5 each), then swings make pelvis->spine and spine->thorax exact; clavicles
   swing each shoulder into the mocap's thorax->shoulder direction (2 rounds with the spine swing);
3. limbs: thigh / upper arm swing onto the mocap bone and twist about it so the knee / elbow bends in the
   mocap's bend plane (weight ramps in from 9 to 23 deg of bend; a thigh never twists past 90 deg); half the
   twist on ``upperleg01``/``upperarm01``, all of it on the twist bones ``*02``; then shin and forearm
   swing onto knee->ankle and elbow->wrist; the foot takes the mocap's ankle->toe heading, with a flat sole
   when the mocap foot is on the floor (toe below 6 cm, ankle below 14 cm; blended out by 14 / 20 cm),
   else the mocap pitch offset by Anny's rest pitch minus 30 deg (mocap rigs put the ankle joint higher
   above the toe joint than Anny does: copying the pitch would stand Anny on tiptoe);
4. neck/head: the head gets the mocap head frame (neck_nose->head exact, thorax->neck_nose in its plane);
   the neck bones are slerped between chest and head, then ``neck01`` swings (head frame kept) to bring
   thorax->neck_nose within :data:`NECK_TOLERANCE_DEG` of the mocap (an exact match would bend Anny's neck
   unnaturally: the mocap's thorax sits higher relative to the head than Anny's mid-shoulders);
5. floor: the body moves vertically so its lowest foot vertex is at the mocap sole height, estimated as
   ``s * min(ankle z - 8 cm, toe z - 3 cm)`` over both feet and snapped to 0 below 5 cm.

Skinning: LBS with the 4 largest driver weights per vertex (after merging rigidly-following bones into
their driver), as one (V, 26) x (26, 12) float32 matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lbi_ros.geometry import axis_angle_matrix

DRIVERS = (
    "root", "spine05", "spine04", "spine03", "spine02", "spine01", "neck01", "neck02", "neck03", "head",
    "clavicle.L", "upperarm01.L", "upperarm02.L", "lowerarm01.L",
    "clavicle.R", "upperarm01.R", "upperarm02.R", "lowerarm01.R",
    "upperleg01.L", "upperleg02.L", "lowerleg01.L", "foot.L",
    "upperleg01.R", "upperleg02.R", "lowerleg01.R", "foot.R",
)  # fmt: skip
DRIVER_INDEX = {n: i for i, n in enumerate(DRIVERS)}
# Label base points and the driver each is rigid in.
POINTS = (
    ("hip.R", "upperleg01.R"), ("knee.R", "lowerleg01.R"), ("ankle.R", "foot.R"),
    ("hip.L", "upperleg01.L"), ("knee.L", "lowerleg01.L"), ("ankle.L", "foot.L"),
    ("spine", "spine02"), ("neck_nose", "head"), ("head", "head"),
    ("shoulder.L", "upperarm01.L"), ("elbow.L", "lowerarm01.L"), ("wrist.L", "lowerarm01.L"),
    ("shoulder.R", "upperarm01.R"), ("elbow.R", "lowerarm01.R"), ("wrist.R", "lowerarm01.R"),
    ("toe.L", "foot.L"), ("toe.R", "foot.R"),
)  # fmt: skip
_P = {n: i for i, (n, _) in enumerate(POINTS)}
# Points taken from bone heads at rest (the others are built in RetargetRig.rest_points).
POINT_BONES = {
    "hip.R": "upperleg01.R", "knee.R": "lowerleg01.R", "ankle.R": "foot.R", "hip.L": "upperleg01.L",
    "knee.L": "lowerleg01.L", "ankle.L": "foot.L", "spine": "spine02", "shoulder.L": "upperarm01.L",
    "elbow.L": "lowerarm01.L", "wrist.L": "wrist.L", "shoulder.R": "upperarm01.R", "elbow.R": "lowerarm01.R",
    "wrist.R": "wrist.R",
}  # fmt: skip
_H36M_FROM_POINTS = (
    ("hip.R", "hip.L"), ("hip.R",), ("knee.R",), ("ankle.R",), ("hip.L",), ("knee.L",), ("ankle.L",),
    ("spine",), ("shoulder.L", "shoulder.R"), ("neck_nose",), ("head",), ("shoulder.L",), ("elbow.L",),
    ("wrist.L",), ("shoulder.R",), ("elbow.R",), ("wrist.R",), ("toe.L",), ("toe.R",),
)  # fmt: skip
CROWN_VERTEX = 881  # hm08: top of the skull on the mid-sagittal line
HEAD_FRACTION = 0.85  # head label: mid-ears -> crown
FLOOR_SNAP_M = 0.05  # estimated sole heights below this are taken as standing on the floor
MOCAP_ANKLE_M, MOCAP_TOE_M = 0.08, 0.03  # ankle / ball-of-foot joint heights above the sole (mocap)
MOCAP_FOOT_PITCH_DEG = 30.0  # ankle->toe pitch below horizontal of a neutral mocap foot
NECK_TOLERANCE_DEG = 8.0  # thorax->neck_nose may differ this much from the mocap (see module doc)
_MIX = np.array([[1.0 / len(ns) if n in ns else 0.0 for n, _ in POINTS] for ns in _H36M_FROM_POINTS])


@dataclass(frozen=True, eq=False)
class RetargetRig:
    """Shape-independent rig data: bones, drivers, label attachment, skin weights (shared by rest bodies)."""

    bone_names: tuple[str, ...]
    bone_parents: np.ndarray  # (B,) int32
    drivers: np.ndarray  # (D,) bone index of each driver
    bone_driver: np.ndarray  # (B,) driver position (0..D-1) each bone moves with
    subtrees: tuple[np.ndarray, ...]  # per driver: driver positions in its subtree (itself first)
    point_driver: np.ndarray  # (P,) driver position of each label base point
    skin_indices: np.ndarray  # (V, K) int32 bone indices (drivers)
    skin_weights: np.ndarray  # (V, K) float32
    lbs_weights: np.ndarray  # (V, D) float32 dense version of the above, over drivers
    foot_vertices: np.ndarray  # surface vertices whose main driver is a foot

    def rest_points(self, heads: np.ndarray, verts: np.ndarray, nose: np.ndarray, ear_l: np.ndarray,
                    ear_r: np.ndarray) -> np.ndarray:  # fmt: skip
        """(P, 3) label base points of a rest body from its bone heads and (COCO-regressed) face points."""
        pts = np.zeros((len(POINTS), 3))
        for n, b in POINT_BONES.items():
            pts[_P[n]] = heads[self.bone_names.index(b)]
        mid_ears = 0.5 * (ear_l + ear_r)
        pts[_P["neck_nose"]] = 0.5 * (nose + mid_ears)
        pts[_P["head"]] = mid_ears + HEAD_FRACTION * (verts[CROWN_VERTEX] - mid_ears)
        for side in "LR":
            toes = [self.bone_names.index(f"toe{k}-1.{side}") for k in range(1, 6)]
            pts[_P[f"toe.{side}"]] = heads[toes].mean(0)
        return pts

    @staticmethod
    def labels_from_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = _MIX @ points
        return lab[:17], lab[17:]


class RestPose(Protocol):
    """What the retargeting reads of a rest body (``anny_model.RestBody``): a protocol, not an import, so
    the dependency points one way (``anny_model`` calls this module, never the reverse)."""

    rig: RetargetRig
    vertices: np.ndarray  # (V, 3) rest vertices, metres
    bone_heads: np.ndarray  # (B, 3)
    joints: np.ndarray  # (17, 3) rest labels
    toes: np.ndarray  # (2, 3) rest labels [left, right]
    points: np.ndarray  # (P, 3) rest label base points (POINTS)


@dataclass(frozen=True, eq=False)
class PosedBody:
    """A posed body in the world frame (Z up, metres); ``joints`` are the H36M-17 labels (see anny_body).

    ``bone_rotations``/``bone_heads`` (all Anny bones) skin with the rest body's sparse weights as
    ``x' = R_b (x - rest.bone_heads[b]) + bone_heads[b]``.
    """

    vertices: np.ndarray  # (V, 3) float32
    joints: np.ndarray  # (17, 3) float64
    toes: np.ndarray  # (2, 3) float64 [left, right]
    bone_heads: np.ndarray  # (B, 3) float64
    bone_rotations: np.ndarray  # (B, 3, 3) float64, world rotation from the rest pose
    scale: float  # Anny size / mocap person size used for the root translation


# ---------------------------------------------------------------------------------------------------------
# Rotation helpers (3x3 matrices, float64)
# ---------------------------------------------------------------------------------------------------------


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    (a0, a1, a2), (b0, b1, b2) = a.tolist(), b.tolist()  # np.cross costs ~30 us on 3-vectors
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = math.sqrt(float(v @ v))
    return v / n if n > 1e-9 else None


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` onto direction ``b`` (identity for a zero vector)."""
    ua, ub = _unit(a), _unit(b)
    if ua is None or ub is None:
        return np.eye(3)
    axis = _cross(ua, ub)
    s, c = math.sqrt(float(axis @ axis)), float(ua @ ub)
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        e = np.zeros(3)
        e[int(np.argmin(np.abs(ua)))] = 1.0
        return axis_angle_matrix(_cross(ua, e) / np.linalg.norm(_cross(ua, e)), math.pi)
    return axis_angle_matrix(axis / s, math.atan2(s, c))


def _frame(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) with x along ``p`` and ``q`` in the x-y half-plane."""
    x = _unit(p)
    if x is None:
        return np.eye(3)
    z = _unit(_cross(x, q))
    if z is None:  # q parallel to p: any perpendicular
        e = np.zeros(3)
        e[int(np.argmin(np.abs(x)))] = 1.0
        z = _unit(_cross(x, e))
    return np.stack([x, _cross(z, x), z], axis=1)


def _align(p0: np.ndarray, q0: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotation taking ``p0`` onto ``p`` exactly and the plane (p0, q0) onto (p, q)."""
    return _frame(p, q) @ _frame(p0, q0).T


def _log(r: np.ndarray) -> np.ndarray:
    c = min(1.0, max(-1.0, (float(np.trace(r)) - 1.0) / 2.0))
    theta = math.acos(c)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if theta < 1e-6:
        return 0.5 * v
    if theta > math.pi - 1e-4:
        b = (r + np.eye(3)) / 2.0
        k = int(np.argmax(np.diag(b)))
        axis = b[:, k] / math.sqrt(max(b[k, k], 1e-12))
        if axis @ v < 0:
            axis = -axis
        return theta * axis / np.linalg.norm(axis)
    return theta / (2.0 * math.sin(theta)) * v


def _slerp(r0: np.ndarray, r1: np.ndarray, t: float) -> np.ndarray:
    rv = _log(r0.T @ r1)
    n = math.sqrt(float(rv @ rv))
    return r0 if n < 1e-12 else r0 @ axis_angle_matrix(rv / n, t * n)


# ---------------------------------------------------------------------------------------------------------
# Posing
# ---------------------------------------------------------------------------------------------------------


class _Pose:
    """Global rotations ``R`` (D, 3, 3) and head positions ``h`` (D, 3) of the drivers."""

    def __init__(self, rig: RetargetRig, h0: np.ndarray, points0: np.ndarray):
        self.rig, self.h0, self.points0 = rig, h0, points0
        self.R = np.repeat(np.eye(3)[None], len(DRIVERS), axis=0)
        self.h = h0.copy()

    def point(self, name: str) -> np.ndarray:
        i = _P[name]
        d = self.rig.point_driver[i]
        return self.h[d] + self.R[d] @ (self.points0[i] - self.h0[d])

    def mid(self, a: str, b: str) -> np.ndarray:
        return 0.5 * (self.point(a) + self.point(b))

    def rotate(self, d: int, s: np.ndarray, pivot: np.ndarray) -> None:
        idx = self.rig.subtrees[d]
        self.R[idx] = s @ self.R[idx]
        self.h[idx] = pivot + (self.h[idx] - pivot) @ s.T

    def set_global(self, d: int, x: np.ndarray) -> None:
        self.rotate(d, x @ self.R[d].T, self.h[d].copy())

    def aim_on_ray(self, d: int, moving: np.ndarray, origin: np.ndarray, direction: np.ndarray,
                   tolerance_deg: float = 0.0) -> None:  # fmt: skip
        """Swing driver ``d``'s subtree about its head so that the point ``moving`` (rigid in the subtree)
        lands on the ray ``origin + lam * direction``, lam > 0 (exact when the ray meets its sphere), or,
        with a tolerance, only by the fraction of that swing that brings the angle to ~``tolerance_deg``."""
        c = self.h[d].copy()
        u, w = _unit(direction), _unit(moving - origin)
        if u is None or w is None:
            return
        err = math.degrees(math.acos(min(1.0, max(-1.0, float(u @ w)))))
        if err <= tolerance_deg:
            return
        v, oc = moving - c, origin - c
        b = float(u @ oc)
        lam = -b + math.sqrt(max(b * b - float(oc @ oc) + float(v @ v), 0.0))
        if lam > 1e-9:
            self.rotate(d, _slerp(np.eye(3), _swing(v, oc + lam * u), 1.0 - tolerance_deg / err), c)

    def aim(self, d: int, a: str, b: str, target: np.ndarray) -> None:
        """Swing driver ``d``'s subtree about its head so that point ``a`` -> point ``b`` is along ``target``."""
        self.rotate(d, _swing(self.point(b) - self.point(a), target), self.h[d].copy())


def _chain(j: np.ndarray) -> float:
    n = np.linalg.norm
    legs = 0.5 * (n(j[1] - j[2]) + n(j[2] - j[3]) + n(j[4] - j[5]) + n(j[5] - j[6]))
    return float(legs + n(j[7] - j[0]) + n(j[8] - j[7]))


def _limb(p: _Pose, side: str, arm: bool, j: np.ndarray, j0: np.ndarray, n0: np.ndarray) -> None:
    """Upper segment swing + bend-plane twist, then lower segment swing (arms: shoulder/elbow/wrist)."""
    up, low, names = ("upperarm", "lowerarm", "shoulder elbow wrist") if arm else ("upperleg", "lowerleg", "hip knee ankle")  # fmt: skip
    d1, d2, d3 = (DRIVER_INDEX[f"{n}.{side}"] for n in (f"{up}01", f"{up}02", f"{low}01"))
    a, b, c = (f"{n}.{side}" for n in names.split())
    ia, ib, ic = ((11, 12, 13) if side == "L" else (14, 15, 16)) if arm else ((4, 5, 6) if side == "L" else (1, 2, 3))  # fmt: skip
    upper, lower = j[ib] - j[ia], j[ic] - j[ib]
    x = _swing(p.point(b) - p.point(a), upper) @ p.R[d1]
    theta = 0.0
    uh, bend = _unit(upper), _cross(upper, lower)
    lu, ll = np.linalg.norm(upper), np.linalg.norm(lower)
    if uh is not None and lu * ll > 1e-12:
        w = min(1.0, max(0.0, (float(np.linalg.norm(bend)) / (lu * ll) - 0.15) / 0.25))
        if w > 0:
            ns = x @ n0
            if not arm and ns @ bend < 0:  # knees bend forward: never twist a thigh past 90 deg
                bend = -bend
            theta = w * math.atan2(float(uh @ _cross(ns, bend)), float(ns @ bend))
    if theta == 0.0:
        p.set_global(d1, x)
    else:  # both halves turn about the limb axis through the hip / shoulder: the knee / elbow stays put
        half = axis_angle_matrix(uh, 0.5 * theta)
        p.set_global(d1, half @ x)
        p.rotate(d2, half, p.h[d1].copy())
    p.aim(d3, b, c, lower)


def _foot_direction(v: np.ndarray, toe_z: float, ankle_z: float, v0: np.ndarray) -> np.ndarray:
    """Anny's ankle->toe target: the mocap heading; the pitch is Anny's own (flat sole) for a foot on the
    floor, else the mocap pitch relative to :data:`MOCAP_FOOT_PITCH_DEG` (mocap rigs differ: ~40 deg)."""
    hn, hn0 = math.hypot(v[0], v[1]), math.hypot(v0[0], v0[1])
    if hn < 1e-6 * (abs(v[2]) + 1e-9):
        return v
    pitch0 = math.atan2(-v0[2], hn0)  # this body's rest foot pitch (sole flat on the floor)
    w = min(1.0, max(0.0, (0.14 - toe_z) / 0.08)) * min(1.0, max(0.0, (0.2 - ankle_z) / 0.06))
    pitch = pitch0 + (1.0 - w) * (math.atan2(-v[2], hn) - math.radians(MOCAP_FOOT_PITCH_DEG))
    return np.array([v[0] / hn * math.cos(pitch), v[1] / hn * math.cos(pitch), -math.sin(pitch)])


def pose_body(rest: RestPose, joints_w: np.ndarray, toes_w: np.ndarray) -> PosedBody:
    """Pose the rest body ``rest`` (:class:`lbi_ros.render.mesh.anny_model.RestBody`) like the mocap frame."""
    j = np.asarray(joints_w, np.float64).reshape(17, 3)
    t = np.asarray(toes_w, np.float64).reshape(2, 3)
    if not (np.isfinite(j).all() and np.isfinite(t).all()):
        raise ValueError("mocap joints/toes must be finite")
    rig: RetargetRig = rest.rig
    j0 = rest.joints
    p = _Pose(rig, rest.bone_heads[rig.drivers], rest.points)
    scale = _chain(j0) / max(_chain(j), 1e-6)

    # 1. pelvis
    pel = _align(j0[4] - j0[1], j0[7] - j0[0], j[4] - j[1], j[7] - j[0])
    p.set_global(DRIVER_INDEX["root"], pel)
    p.h += scale * j[0] - p.mid("hip.R", "hip.L")
    # 2. spine and clavicles
    chest = _align(j0[8] - j0[7], j0[11] - j0[14], j[8] - j[7], j[11] - j[14])
    for k, name in enumerate(("spine05", "spine04", "spine03", "spine02", "spine01")):
        p.set_global(DRIVER_INDEX[name], _slerp(pel, chest, (k + 1) / 5.0))
    p.aim_on_ray(DRIVER_INDEX["spine05"], p.point("spine"), p.mid("hip.R", "hip.L"), j[7] - j[0])
    half_width = float(np.linalg.norm(j0[11] - j0[8]))
    thorax0 = j0[8]
    for _ in range(2):
        p.rotate(DRIVER_INDEX["spine02"], _swing(p.mid("shoulder.L", "shoulder.R") - p.point("spine"), j[8] - j[7]),
                 p.point("spine"))  # fmt: skip
        d = DRIVER_INDEX["spine01"]
        chest_thorax = p.h[d] + p.R[d] @ (thorax0 - p.h0[d])
        for side, js in (("L", 11), ("R", 14)):
            u = _unit(j[js] - j[8])
            if u is None:
                continue
            dc = DRIVER_INDEX[f"clavicle.{side}"]
            piv = p.h[dc].copy()
            p.rotate(dc, _swing(p.point(f"shoulder.{side}") - piv, chest_thorax + half_width * u - piv), piv)
    # 3. limbs
    knee_axis = _unit(j0[4] - j0[1])
    for side, (ia, ib) in (("L", (4, 5)), ("R", (1, 2))):
        thigh0 = _unit(j0[ib] - j0[ia])
        _limb(p, side, False, j, j0, _unit(knee_axis - (knee_axis @ thigh0) * thigh0))
        k = 0 if side == "L" else 1
        foot = _foot_direction(t[k] - j[ia + 2], t[k, 2], j[ia + 2, 2], rest.toes[k] - j0[ia + 2])
        p.aim(DRIVER_INDEX[f"foot.{side}"], f"ankle.{side}", f"toe.{side}", foot)
    for side, (ia, ib, ic) in (("L", (11, 12, 13)), ("R", (14, 15, 16))):
        n0 = _unit(_cross(j0[ib] - j0[ia], j0[ic] - j0[ib]))
        _limb(p, side, True, j, j0, n0 if n0 is not None else np.zeros(3))
    # 4. neck and head
    head = _align(j0[10] - j0[9], j0[9] - j0[8], j[10] - j[9], j[9] - j[8])
    upper = p.R[DRIVER_INDEX["spine01"]].copy()
    for k, name in enumerate(("neck01", "neck02", "neck03", "head")):
        p.set_global(DRIVER_INDEX[name], _slerp(upper, head, (k + 1) / 4.0))
    d = DRIVER_INDEX["head"]
    off = head @ (p.points0[_P["neck_nose"]] - p.h0[d])  # neck_nose from the head pivot, final head frame
    p.aim_on_ray(
        DRIVER_INDEX["neck01"],
        p.h[d],
        p.mid("shoulder.L", "shoulder.R") - off,
        j[9] - j[8],
        NECK_TOLERANCE_DEG,
    )
    p.set_global(d, head)

    # skinning (float32), floor, labels
    a = np.empty((len(DRIVERS), 3, 4))
    a[:, :, :3] = p.R
    a[:, :, 3] = p.h - np.einsum("dij,dj->di", p.R, p.h0)
    m = (rig.lbs_weights @ a.reshape(-1, 12).astype(np.float32)).reshape(-1, 3, 4)
    x = rest.vertices
    verts = m[:, :, 0] * x[:, 0:1] + m[:, :, 1] * x[:, 1:2] + m[:, :, 2] * x[:, 2:3] + m[:, :, 3]
    sole = scale * min(
        j[3, 2] - MOCAP_ANKLE_M, j[6, 2] - MOCAP_ANKLE_M, t[0, 2] - MOCAP_TOE_M, t[1, 2] - MOCAP_TOE_M
    )
    sole = 0.0 if sole < FLOOR_SNAP_M else sole
    dz = sole - float(verts[rig.foot_vertices, 2].min())
    verts[:, 2] += np.float32(dz)
    p.h[:, 2] += dz
    pts = p.h[rig.point_driver] + np.einsum(
        "pij,pj->pi", p.R[rig.point_driver], rest.points - p.h0[rig.point_driver]
    )
    joints, toes = RetargetRig.labels_from_points(pts)
    bd = rig.bone_driver
    rot = p.R[bd]
    heads = p.h[bd] + np.einsum("bij,bj->bi", rot, rest.bone_heads - p.h0[bd])
    return PosedBody(
        vertices=verts, joints=joints, toes=toes, bone_heads=heads, bone_rotations=rot, scale=scale
    )

"""Anny parametric bodies (NAVER Labs, code Apache-2.0, MakeHuman data CC0): loading, shapes, rest bodies.

The body model behind the rendered people. Public entry points (re-exported by :mod:`lbi_ros.render.mesh.anny_body`):
:class:`BodyShape`, :func:`sample_body_shape`, :class:`AnnyBodyModel` (``rest(shape)`` then ``pose(rest, joints,
toes)``, see :mod:`lbi_ros.render.mesh.anny_retarget` for the retargeting and the label definitions).

Model: ``anny.Anny(rig="anny", topology="anny-full", phenotypes="all")``. The ``anny-full`` topology keeps all
19,158 MakeHuman hm08 vertices in hm08 order (what ``.mhclo`` clothes reference), triangulated faces; the
vertices no face uses (MakeHuman helper geometry) are posed too, ``RestBody.surface_vertices`` lists the rest.
Anny is already **Z up, metres** (``0.1 * Rx(+90 deg)`` from MakeHuman), the body facing -Y with its left
side at +X; the rest pose is an A-pose. The only change made here: the rest body is shifted up so the
lowest surface vertex is at z = 0 (x, y untouched). UVs: hm08 has seams, so there is no per-vertex UV:
``RestBody.uv`` (T, 2) + ``face_uv`` (F, 3) give one UV per face corner (as in the .obj), and
``render_to_vertex`` / ``render_uv`` / ``render_faces`` the equivalent unwelded mesh with per-vertex UVs.

Licences: only the rig / topology strings of :data:`ALLOWED_RIGS` / :data:`ALLOWED_TOPOLOGIES` are ever
passed to anny, and :func:`forbid_noncommercial` disables anny's downloader of non-commercial data before
every build (see the guard block below; a test scans ``lbi_ros/`` to keep those words inside it).

Cache: anny builds ~1 GB of derived data once (~75 s on one core), under ``<repo>/.cache/anny``
(override: env ``LBI_ANNY_CACHE``); never ``~/.cache``. Nothing is built at import time; the model is built
lazily, once per process (lock-protected), and is dropped when pickled (DataLoader workers rebuild it).

Timings (torch threads = 1, one core of a shared 2-core VM): import ~1 s; model load from the cache ~1.2 s
(first build ~75 s); ``rest(shape)`` ~9 ms per new shape (cached after, LRU of 64: ~5 us); ``pose`` ~1.5 ms
per frame (retargeting ~1.1 ms + numpy LBS ~0.4 ms for 19,158 vertices). anny's own skinning was not used:
its dense float64 torch LBS alone takes ~5.8 ms per body on one core, and it wants local pose parameters.
Skin weights: top-4 per vertex after merging bones onto their drivers drops 0.26 % of the weight on
average over surface vertices (6 % of them lose more than 1 %, at most 12 %).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.render.mesh import anny_retarget as _rt

# --- licence guard begin (the only place in lbi_ros/ where the non-commercial model names may appear) ---
ALLOWED_RIGS = frozenset({"anny"})  # the retargeting is written for this rig's bone names
ALLOWED_TOPOLOGIES = frozenset({"anny-full"})  # hm08 vertex indexing (MakeHuman clothes)
_FORBIDDEN_PATH_FUNCTIONS = (
    "download_noncommercial_data",
    "get_anny2smpl_data_path",
    "get_anny2smplx_data_path",
)


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("lbi_ros: anny's non-commercial data (SMPL/SMPL-X/SOMA derived) must never be used")


def forbid_noncommercial() -> None:
    """Replace anny's accessors of non-commercial data with functions that raise ``RuntimeError``.

    Patches ``anny.paths`` and every already-imported anny module that imported the names directly.
    """
    import anny.paths

    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "anny" or mod_name.startswith("anny.")):
            continue
        for fn in _FORBIDDEN_PATH_FUNCTIONS:
            if hasattr(mod, fn):
                setattr(mod, fn, _refuse)
    for fn in _FORBIDDEN_PATH_FUNCTIONS:
        setattr(anny.paths, fn, _refuse)


def _check_allowed(rig: str, topology: str) -> None:
    if rig not in ALLOWED_RIGS:
        raise ValueError(f"Anny rig {rig!r} is not allowed (allowed: {sorted(ALLOWED_RIGS)})")
    if topology not in ALLOWED_TOPOLOGIES:
        raise ValueError(f"Anny topology {topology!r} is not allowed (allowed: {sorted(ALLOWED_TOPOLOGIES)})")


# --- licence guard end ---


def anny_cache_dir() -> Path:
    """``$LBI_ANNY_CACHE`` or ``<repo>/.cache/anny`` (repo = the directory holding the lbi_ros package)."""
    env = os.environ.get("LBI_ANNY_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[3] / ".cache" / "anny"


# ---------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyShape:
    """Anny phenotype values, each in [0, 1] (anny's own scale; ``age`` 0.67 = 16 y, 0.77 = 18 y,
    0.83 = 64 y; ``gender`` 0 = male, 1 = female; race weights are normalised by anny)."""

    gender: float = 0.5
    age: float = 0.8
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.38
    proportions: float = 0.5
    cupsize: float = 0.5
    firmness: float = 0.5
    african: float = 1 / 3
    asian: float = 1 / 3
    caucasian: float = 1 / 3

    def phenotypes(self) -> dict[str, float]:
        return asdict(self)


# Train box; "heldout" shapes always leave it along at least one of height / weight / muscle.
TRAIN_RANGES = {"height": (0.22, 0.52), "weight": (0.2, 0.75), "muscle": (0.2, 0.75)}
HELDOUT_RANGES = {"height": (0.12, 0.62), "weight": (0.0, 1.0), "muscle": (0.0, 1.0)}


def in_train_region(shape: BodyShape) -> bool:
    return all(lo <= getattr(shape, k) <= hi for k, (lo, hi) in TRAIN_RANGES.items())


def sample_body_shape(rng: np.random.Generator, split: Literal["train", "heldout"] = "train") -> BodyShape:
    """A random adult (sometimes teen) body shape.

    Both splits: ``gender`` 45 % U(0, 0.2) (male), 45 % U(0.8, 1) (female), 10 % U(0.2, 0.8);
    ``proportions`` U(0.25, 0.75); ``cupsize``, ``firmness`` U(0.2, 0.8); race weights Dirichlet(1, 1, 1).

    * ``"train"``: ``age`` 88 % U(0.77, 0.86) (adults 18-72 y), 12 % U(0.56, 0.77) (teens ~14-18 y);
      ``height`` U(0.22, 0.52) (men ~1.59-1.92 m, women ~1.46-1.79 m at 18 y), ``weight`` U(0.2, 0.75),
      ``muscle`` U(0.2, 0.75) (:data:`TRAIN_RANGES`).
    * ``"heldout"``: adults only, ``age`` U(0.77, 0.88); each of height / weight / muscle is, with
      probability 1/2 (at least one of them always), drawn from the extremes the train split never uses:
      height in [0.12, 0.22) or (0.52, 0.62] (men ~1.49-1.59 / 1.92-2.03 m), weight and muscle in
      [0, 0.2) or (0.75, 1]; the others from the train ranges. So ``in_train_region`` is False for every
      heldout shape and True for every train shape.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    u = rng.random(17)
    g = u[0]
    gender = 0.2 * u[1] if g < 0.45 else 0.8 + 0.2 * u[1] if g < 0.9 else 0.2 + 0.6 * u[1]
    if split == "train":
        age = 0.77 + 0.09 * u[3] if u[2] < 0.88 else 0.56 + 0.21 * u[3]
        extreme = [False, False, False]
    else:
        age = 0.77 + 0.11 * u[3]
        extreme = [bool(x < 0.5) for x in u[4:7]]
        if not any(extreme):
            extreme[int(u[7] * 3) % 3] = True
    vals = {}
    for name, ext, a, b in zip(("height", "weight", "muscle"), extreme, u[8:11], u[11:14], strict=True):
        lo, hi = TRAIN_RANGES[name]
        if not ext:
            vals[name] = lo + (hi - lo) * a
        else:
            elo, ehi = HELDOUT_RANGES[name]
            # below (lo) or above (hi) the train box, excluding the box's closed ends
            vals[name] = (elo + (lo - elo) * a * 0.999) if b < 0.5 else (ehi - (ehi - hi) * a * 0.999)
    race = rng.dirichlet((1.0, 1.0, 1.0))
    return BodyShape(
        gender=float(gender), age=float(age), muscle=float(vals["muscle"]), weight=float(vals["weight"]),
        height=float(vals["height"]), proportions=float(0.25 + 0.5 * u[14]), cupsize=float(0.2 + 0.6 * u[15]),
        firmness=float(0.2 + 0.6 * u[16]), african=float(race[0]), asian=float(race[1]),
        caucasian=float(race[2]),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Rest bodies
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RestBody:
    """One body shape in Anny's rest (A) pose: world Z up, metres, lowest surface vertex at z = 0.

    Arrays are shared between bodies where shape-independent (faces, UVs, skin weights): do not modify.
    ``skin_indices``/``skin_weights``: the 4 largest weights per vertex (renormalised) after merging each
    bone's weight into its *driver* (the nearest ancestor-or-self the retargeting rotates; the other bones
    move rigidly with it), as indices into ``bone_names``. ``joints``/``toes`` are the labels of the rest
    pose (definitions in :mod:`lbi_ros.render.mesh.anny_retarget`).
    """

    shape: BodyShape
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32 triangles
    uv: np.ndarray  # (T, 2) float32
    face_uv: np.ndarray  # (F, 3) int32 indices into uv
    # Unwelded render mesh (one vertex per distinct (vertex, uv) pair, R = 14,898): draw
    # ``posed.vertices[render_to_vertex]`` with ``render_faces`` and per-vertex ``render_uv``.
    render_to_vertex: np.ndarray  # (R,) int32
    render_uv: np.ndarray  # (R, 2) float32
    render_faces: np.ndarray  # (F, 3) int32 indices into the render vertices
    surface_vertices: np.ndarray  # (S,) int32 vertices used by faces (the rest are MakeHuman helpers)
    skin_indices: np.ndarray  # (V, 4) int32 bone indices
    skin_weights: np.ndarray  # (V, 4) float32, rows sum to 1
    bone_names: tuple[str, ...]
    bone_parents: np.ndarray  # (B,) int32, -1 for the root
    bone_heads: np.ndarray  # (B, 3) float64
    joints: np.ndarray  # (17, 3) float64 rest labels
    toes: np.ndarray  # (2, 3) float64 rest labels [left, right]
    height: float  # metres, top of the head to the soles
    rig: _rt.RetargetRig = field(repr=False)
    points: np.ndarray = field(repr=False)  # (P, 3) rest label base points (see anny_retarget.POINTS)


SKIN_TOP_K = 4  # skin weights kept per vertex


def build_retarget_rig(bone_names: list[str], bone_parents: np.ndarray, vertex_bone_indices: np.ndarray,
                       vertex_bone_weights: np.ndarray, surface: np.ndarray) -> _rt.RetargetRig:  # fmt: skip
    """Drivers of every bone, subtrees, label attachment and top-k skin weights merged onto the drivers."""
    names = tuple(bone_names)
    missing = [n for n in _rt.DRIVERS + tuple(_rt.POINT_BONES.values()) if n not in names]
    if missing:
        raise RuntimeError(f"Anny rig lacks bones {missing}")
    parents = np.asarray(bone_parents, np.int32)
    drivers = np.array([names.index(n) for n in _rt.DRIVERS], np.int32)
    pos = {int(b): i for i, b in enumerate(drivers)}
    bone_driver = np.empty(len(names), np.int32)
    for b in range(len(names)):  # nearest driver ancestor-or-self
        a = b
        while a not in pos:
            a = int(parents[a])
            if a < 0:
                raise RuntimeError(f"bone {names[b]} has no driver ancestor")
        bone_driver[b] = pos[a]
    d_parent = [-1] + [int(bone_driver[parents[b]]) for b in drivers[1:]]
    subtrees = []
    for d in range(len(_rt.DRIVERS)):
        sub = [d]
        for e in range(d + 1, len(_rt.DRIVERS)):  # DRIVERS is topologically ordered
            if d_parent[e] in sub:
                sub.append(e)
        subtrees.append(np.array(sub, np.intp))
    n_v, n_d = vertex_bone_indices.shape[0], len(_rt.DRIVERS)
    dense = np.zeros((n_v, n_d))
    rows = np.repeat(np.arange(n_v), vertex_bone_indices.shape[1])
    np.add.at(dense, (rows, bone_driver[vertex_bone_indices.ravel()]), vertex_bone_weights.ravel())
    top = np.argsort(-dense, axis=1, kind="stable")[:, :SKIN_TOP_K]
    w = np.take_along_axis(dense, top, axis=1)
    w /= w.sum(1, keepdims=True)
    lbs = np.zeros((n_v, n_d), np.float32)
    np.put_along_axis(lbs, top, w.astype(np.float32), axis=1)
    main = top[:, 0]
    feet = np.nonzero(surface & np.isin(main, [_rt.DRIVER_INDEX["foot.L"], _rt.DRIVER_INDEX["foot.R"]]))[0]
    out = _rt.RetargetRig(
        bone_names=names, bone_parents=parents, drivers=drivers, bone_driver=bone_driver,
        subtrees=tuple(subtrees), point_driver=np.array([_rt.DRIVER_INDEX[d] for _, d in _rt.POINTS], np.intp),
        skin_indices=drivers[top].astype(np.int32), skin_weights=w.astype(np.float32), lbs_weights=lbs,
        foot_vertices=feet.astype(np.intp),
    )  # fmt: skip
    for a in (parents, drivers, bone_driver, out.skin_indices, out.skin_weights, lbs, feet):
        a.setflags(write=False)
    return out


class AnnyBodyModel:
    """Builds rest bodies for :class:`BodyShape` values and poses them (``pose`` = :func:`anny_retarget.pose_body`).

    Lazily loads anny on first use; safe to share across threads; pickles without its anny model.
    """

    def __init__(self, rig: str = "anny", topology: str = "anny-full", cache_size: int = 64):
        _check_allowed(rig, topology)
        self.rig_name, self.topology_name, self.cache_size = rig, topology, cache_size
        self._lock = threading.RLock()
        self._model: Any = None
        self._static: dict[str, Any] | None = None
        self._cache: OrderedDict[BodyShape, RestBody] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"rig_name": self.rig_name, "topology_name": self.topology_name, "cache_size": self.cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["rig_name"], state["topology_name"], state["cache_size"])  # type: ignore[misc]

    # -- loading ------------------------------------------------------------------------------------------
    def _ensure_built(self) -> dict[str, Any]:
        with self._lock:
            if self._static is None:
                self._build()
            assert self._static is not None
            return self._static

    def _build(self) -> None:
        import anny
        import anny.paths
        import torch

        _check_allowed(self.rig_name, self.topology_name)
        forbid_noncommercial()
        cache = anny_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        anny.paths.set_anny_cache_path(cache)
        model = anny.Anny(
            rig=self.rig_name, topology=self.topology_name, phenotypes="all", skinning_method="lbs"
        )
        forbid_noncommercial()  # again: building may import more anny modules
        n_vert = int(model.template_vertices.shape[0])
        faces = model.faces.cpu().numpy().astype(np.int32)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise RuntimeError(f"expected triangulated faces, got {faces.shape}")
        used = np.zeros(n_vert, bool)
        used[faces.ravel()] = True
        kp = torch.load(
            Path(anny.paths.get_anny_root_dir()) / "data" / "keypoints" / "coco.pth", weights_only=True
        )
        base = model.base_mesh_vertex_indices.cpu().numpy()
        keypoints = {}
        for name in ("nose", "left_ear", "right_ear"):
            w = kp[name].double().numpy()[base]
            nz = np.nonzero(w)[0]
            keypoints[name] = (nz, w[nz] / w[nz].sum())
        rig = build_retarget_rig(
            bone_names=list(model.bone_labels), bone_parents=np.asarray(model.bone_parents),
            vertex_bone_indices=model.vertex_bone_indices.cpu().numpy(),
            vertex_bone_weights=model.vertex_bone_weights.cpu().numpy(), surface=used,
        )  # fmt: skip
        uv = model.texture_coordinates.cpu().numpy().astype(np.float32)
        face_uv = model.face_texture_coordinate_indices.cpu().numpy().astype(np.int32)
        pairs, inverse = np.unique(np.stack([faces.ravel(), face_uv.ravel()], 1), axis=0, return_inverse=True)
        self._static = dict(
            faces=faces, uv=uv, face_uv=face_uv, render_to_vertex=pairs[:, 0].astype(np.int32),
            render_uv=uv[pairs[:, 1]], render_faces=inverse.reshape(faces.shape).astype(np.int32),
            surface=np.nonzero(used)[0].astype(np.int32), surface_mask=used, keypoints=keypoints, rig=rig,
        )  # fmt: skip
        for k in ("faces", "uv", "face_uv", "render_to_vertex", "render_uv", "render_faces", "surface"):
            self._static[k].setflags(write=False)
        self._model = model

    @property
    def anny_model(self) -> Any:
        """The underlying ``anny.Anny`` (built on first access)."""
        self._ensure_built()
        return self._model

    # -- rest bodies --------------------------------------------------------------------------------------
    def rest(self, shape: BodyShape) -> RestBody:
        """The rest body of ``shape`` (cached per shape, LRU)."""
        with self._lock:
            hit = self._cache.get(shape)
            if hit is not None:
                self._cache.move_to_end(shape)
                return hit
            body = self._build_rest(shape)
            self._cache[shape] = body
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return body

    def _build_rest(self, shape: BodyShape) -> RestBody:
        import torch
        from anny.skinning.skinning import apply_linear_blendshape

        st = self._ensure_built()
        m = self._model
        with torch.no_grad():
            coeffs = m.get_phenotype_blendshape_coefficients(**shape.phenotypes())
            verts = m.get_rest_vertices(coeffs)[0].cpu().numpy()
            heads = apply_linear_blendshape(m.template_bone_heads, m.bone_heads_blendshapes, coeffs)[0]
            heads = heads.cpu().numpy().astype(np.float64)
        mask = st["surface_mask"]
        z0 = float(verts[mask, 2].min())
        height = float(verts[mask, 2].max()) - z0
        verts[:, 2] -= z0
        heads[:, 2] -= z0
        kp = {k: (verts[idx] * w[:, None]).sum(0) for k, (idx, w) in st["keypoints"].items()}
        rig: _rt.RetargetRig = st["rig"]
        points = rig.rest_points(heads, verts, nose=kp["nose"], ear_l=kp["left_ear"], ear_r=kp["right_ear"])
        joints, toes = rig.labels_from_points(points)
        vertices = verts.astype(np.float32)
        for a in (vertices, heads, points, joints, toes):
            a.setflags(write=False)
        return RestBody(
            shape=shape, vertices=vertices, faces=st["faces"], uv=st["uv"], face_uv=st["face_uv"],
            render_to_vertex=st["render_to_vertex"], render_uv=st["render_uv"], render_faces=st["render_faces"],
            surface_vertices=st["surface"], skin_indices=rig.skin_indices, skin_weights=rig.skin_weights,
            bone_names=rig.bone_names, bone_parents=rig.bone_parents, bone_heads=heads, joints=joints, toes=toes,
            height=height, rig=rig, points=points,
        )  # fmt: skip

    # -- posing -------------------------------------------------------------------------------------------
    def pose(self, rest: RestBody, joints_w: np.ndarray, toes_w: np.ndarray) -> _rt.PosedBody:
        """Retarget a mocap pose (H36M-17 ``joints_w`` (17, 3) + ``toes_w`` (2, 3) [left, right], world Z up,
        metres, floor z = 0) onto ``rest``; see :func:`lbi_ros.render.mesh.anny_retarget.pose_body`."""
        return _rt.pose_body(rest, joints_w, toes_w)

"""MakeHuman clothes and hair (`.mhclo` + `.obj`) fitted on posed Anny bodies, every frame.

A `.mhclo` file ties each vertex of a garment mesh to three vertices of the MakeHuman base mesh
(hm08 indexing, which is Anny's ``topology="anny-full"``: 19,158 vertices) with three barycentric
weights and an offset. MakeHuman evaluates (``proxy.py``)::

    garment = sum_k w_k * body[ref_k] + diag(sx, sy, sz) @ offset

with ``s_axis = |body[a][axis] - body[b][axis]| / d`` from the ``x_scale a b d`` (etc.) lines, all
in MakeHuman units (decimetres, Y up, the body faces +Z). Anny is the same mesh put in metres and
Z up by ``0.1 * Rx(+90 deg)`` (``anny/models/full_model.py``), so MakeHuman (x, y, z) is
Anny (x, -z, y) / 10: we checked that the reference distances of the `.mhclo` files match Anny's
default body to ~2-3 % (e.g. ``x_scale 5399 11998 1.434`` dm vs 0.1456 m on Anny), so the scales
are taken from the body in metres with ``d * 0.1``.

Offsets under posing: the formula above is a rest-pose formula; a world-frame offset added to a
rotated limb points the wrong way (a sleeve offset meant "outwards from the forearm" ends up
inside the arm once the elbow bends). `fit_garment` therefore, when given the rest body as well,
expresses the scaled rest offset in the orthonormal frame of its reference triangle on the rest
body (edge, in-plane perpendicular, normal) and rebuilds it in the frame of the same triangle on
the posed body: ``offset_posed = F_posed @ F_rest.T @ offset_rest``. The triangle is the garment
vertex's own anchor, so the offset turns with exactly the skin it is attached to (no skinning
weights needed). `GarmentFitter` does the rest-pose work once per body, then one frame per garment
vertex per pose: ~0.22 ms per ~1,700-vertex garment (0.13 us/vertex, 1 CPU thread); plain
`fit_garment` with a rest body redoes the rest work (~0.45 ms). Degenerate anchors (one reference
vertex, repeated or collinear vertices) keep the rest offset unturned (none in the 30 MakeHuman
assets; single-vertex lines carry no offset).

The render mesh is "unwelded": the `.obj` has one UV per face corner, so a garment vertex with
several UVs is duplicated; ``render_to_fit`` maps render vertices back to fitted vertices so the
fit is computed once per garment vertex. The asset library (which items, held-out split, outfit
sampling) is in `lbi_ros.render.mesh.asset_library`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_BODY_VERTICES = 19158  # Anny topology="anny-full" == MakeHuman hm08
MH_UNIT_M = 0.1  # one MakeHuman unit is a decimetre
# MakeHuman (Y up, faces +Z) -> Anny / our world (Z up): Rx(+90 deg); body_axis = _MH_TO_BODY @ mh_axis.
_MH_TO_BODY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# Which body axis each MakeHuman scale axis (x_scale, y_scale, z_scale) is measured along.
_SCALE_BODY_AXIS = (0, 2, 1)
_DEGENERATE_SIN = 1e-4  # |e1 x e2| / (|e1| |e2|) below this: no reliable triangle frame
KINDS = ("clothes", "shoes", "hat", "hair")


@dataclass(frozen=True, eq=False)
class Garment:
    """One parsed `.mhclo` asset. Arrays are read-only (garments are cached and shared).

    G garment (fit) vertices, R render vertices (G plus duplicates at UV seams), T triangles.
    """

    name: str
    kind: str  # one of KINDS
    path: Path  # the .mhclo file
    tags: tuple[str, ...]  # lower-case `tag` lines (e.g. "male", "short", "shoes")
    ref_vertices: np.ndarray  # (G, 3) int64 body vertex indices
    ref_weights: np.ndarray  # (G, 3) float32
    offsets: np.ndarray  # (G, 3) float32, MakeHuman units and axes (dm, Y up), unscaled
    scale_refs: np.ndarray  # (3, 3) float64 rows x/y/z_scale: (vertex a, vertex b, distance dm); a<0: unscaled
    faces: np.ndarray  # (T, 3) int32 into render vertices, triangulated from the obj's quads
    uvs: np.ndarray  # (R, 2) float32 per render vertex (0 where the obj has no UV)
    render_to_fit: np.ndarray  # (R,) int64 render vertex -> garment vertex
    delete_verts: np.ndarray  # (D,) int64 body vertices hidden under the garment
    z_depth: int  # MakeHuman draw order: larger is further out (hair 50, suits 50, shoes 5)
    material: str  # the `material` line (a .mhmat path relative to the asset), "" if none

    @property
    def n_fit(self) -> int:
        return int(self.ref_vertices.shape[0])

    @property
    def n_render(self) -> int:
        return int(self.render_to_fit.shape[0])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _parse_obj(path: Path) -> tuple[np.ndarray, list[list[tuple[int, int]]], np.ndarray]:
    """-> vertices (V,3), polygons as lists of (vertex, uv) 0-based (uv -1 when absent), uvs (U,2)."""
    if not path.is_file():
        raise ValueError(f"{path}: obj file not found")
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    polys: list[list[tuple[int, int]]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            if words[0] == "v":
                verts.append([float(w) for w in words[1:4]])
                if len(verts[-1]) != 3:
                    raise ValueError("a vertex needs 3 coordinates")
            elif words[0] == "vt":
                uvs.append([float(w) for w in words[1:3]])
                if len(uvs[-1]) != 2:
                    raise ValueError("a texture coordinate needs 2 values")
            elif words[0] == "f":
                if len(words) < 4:
                    raise ValueError("a face needs at least 3 corners")
                poly = []
                for corner in words[1:]:
                    parts = corner.split("/")
                    v = int(parts[0])
                    t = int(parts[1]) if len(parts) > 1 and parts[1] else 0
                    v = v - 1 if v > 0 else len(verts) + v  # obj indices are 1-based; negative = relative
                    t = (t - 1 if t > 0 else len(uvs) + t) if t else -1
                    if not 0 <= v < len(verts) or t >= len(uvs) or t < -1:
                        raise ValueError(f"face corner {corner!r} out of range")
                    poly.append((v, t))
                polys.append(poly)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}: {line.strip()!r}") from None
    if not verts or not polys:
        raise ValueError(f"{path}: no vertices or no faces")
    return np.asarray(verts, np.float64), polys, np.asarray(uvs, np.float32).reshape(-1, 2)


def _render_mesh(polys: list[list[tuple[int, int]]], uvs: np.ndarray):
    """Unweld on (vertex, uv) corner pairs and fan-triangulate. -> faces, uvs, render_to_fit."""
    corners = np.asarray([c for p in polys for c in p], np.int64)  # (C, 2)
    keys, inverse = np.unique(corners, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tris = []
    start = 0
    for p in polys:
        idx = inverse[start : start + len(p)]
        start += len(p)
        tris.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, len(p) - 1))
    render_uv = np.zeros((len(keys), 2), np.float32)
    has_uv = keys[:, 1] >= 0
    if uvs.size:
        render_uv[has_uv] = uvs[keys[has_uv, 1]]
    return np.asarray(tris, np.int32), render_uv, keys[:, 0]


def read_tags(path: Path) -> tuple[str, ...]:
    """Lower-case `tag` lines of a .mhclo, read only up to its first vertex line."""
    tags = []
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0][0].isdigit():
                break
            if words[0] == "tag" and len(words) > 1:
                tags.append(" ".join(words[1:]).lower())
    return tuple(tags)


def kind_of(path: Path, tags: tuple[str, ...]) -> str:
    """``hair`` in a ``hair/<item>/`` folder (or tagged so), ``shoes`` / ``hat`` from the tags,
    else ``clothes`` (MakeHuman's suits are one top-and-bottom garment)."""
    if path.parent.parent.name == "hair" or "hair" in tags:
        return "hair"
    if "shoes" in tags:
        return "shoes"
    if "hats" in tags or "hat" in tags:
        return "hat"
    return "clothes"


def load_garment(mhclo_path: str | Path, kind: str | None = None) -> Garment:
    """Parse a `.mhclo` and its `.obj`, once per process (cached on resolved path, mtime, kind).

    ``kind`` overrides the guess `kind_of` makes from the folder and tags. Raises ``ValueError`` naming the file (and line) on
    malformed input, a missing obj file, or body indices outside hm08's 19,158 vertices.
    """
    path = Path(mhclo_path).resolve()
    if not path.is_file():
        raise ValueError(f"{path}: mhclo file not found")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return _load_cached(path, path.stat().st_mtime_ns, kind or kind_of(path, read_tags(path)))


@functools.lru_cache(maxsize=256)
def _load_cached(path: Path, _mtime_ns: int, kind: str) -> Garment:
    tags: list[str] = []
    obj_file = material = ""
    z_depth = 50
    scale_refs = np.array([[-1, -1, 1.0]] * 3)
    refs: list[tuple[int, ...]] = []
    weights: list[tuple[float, ...]] = []
    offsets: list[tuple[float, ...]] = []
    deleted: list[int] = []
    status = ""
    # A state machine like MakeHuman's own reader: `verts` / `delete_verts` switch what plain
    # number lines mean; other keyword lines (which may come in between) do not.
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0]
        try:
            if key == "verts":
                status = "verts"
            elif key == "delete_verts":
                status = "delete"
            elif key in ("weights", "shapekey"):
                status = ""
            elif key == "tag" and len(words) > 1:
                tags.append(" ".join(words[1:]).lower())
            elif key == "obj_file" and len(words) > 1:
                obj_file = " ".join(words[1:])
            elif key == "material" and len(words) > 1:
                material = " ".join(words[1:])
            elif key == "z_depth" and len(words) > 1:
                z_depth = int(words[1])
            elif key in ("x_scale", "y_scale", "z_scale"):
                if len(words) != 4:
                    raise ValueError(f"{key} needs 3 values (vertex, vertex, distance)")
                a, b, d = int(words[1]), int(words[2]), float(words[3])
                if not (0 <= a < N_BODY_VERTICES and 0 <= b < N_BODY_VERTICES):
                    raise ValueError(f"{key} vertex out of range [0, {N_BODY_VERTICES})")
                if not d > 0:
                    raise ValueError(f"{key} distance must be > 0")
                scale_refs["xyz".index(key[0])] = (a, b, d)
            elif key[0].isdigit() or key[0] in "-.":
                if status == "verts":
                    if len(words) == 1:  # pinned to one body vertex
                        refs.append((int(words[0]),) * 3)
                        weights.append((1.0, 0.0, 0.0))
                        offsets.append((0.0, 0.0, 0.0))
                    elif len(words) == 9:
                        refs.append(tuple(int(w) for w in words[:3]))
                        weights.append(tuple(float(w) for w in words[3:6]))
                        offsets.append(tuple(float(w) for w in words[6:9]))
                    else:
                        raise ValueError(f"a vertex line needs 1 or 9 columns, got {len(words)}")
                    if not all(0 <= r < N_BODY_VERTICES for r in refs[-1]):
                        raise ValueError(f"body vertex out of range [0, {N_BODY_VERTICES})")
                elif status == "delete":
                    seq = False
                    for w in words:
                        if w == "-":
                            seq = True
                            continue
                        v = int(w)
                        if seq:
                            deleted.extend(range(deleted[-1] + 1, v + 1))
                            seq = False
                        else:
                            deleted.append(v)
                    if deleted and not 0 <= min(deleted) <= max(deleted) < N_BODY_VERTICES:
                        raise ValueError(f"delete_verts vertex out of range [0, {N_BODY_VERTICES})")
                else:
                    raise ValueError("number line outside a verts / delete_verts section")
        except (ValueError, IndexError) as e:
            raise ValueError(f"{path}:{lineno}: {e}: {line.strip()!r}") from None
    if not obj_file:
        raise ValueError(f"{path}: no obj_file line")
    if not refs:
        raise ValueError(f"{path}: no vertex lines after 'verts'")
    obj_verts, polys, obj_uvs = _parse_obj(path.parent / obj_file)
    if len(obj_verts) != len(refs):
        raise ValueError(f"{path}: {len(refs)} vertex lines but {path.parent / obj_file} has {len(obj_verts)} vertices")
    w = np.asarray(weights, np.float32)
    o = np.asarray(offsets, np.float32)
    if not (np.isfinite(w).all() and np.isfinite(o).all()):
        raise ValueError(f"{path}: non-finite weights or offsets")
    faces, uvs, render_to_fit = _render_mesh(polys, obj_uvs)
    tags_t = tuple(tags)
    return Garment(
        name=path.stem,  # the file stem names it (`name` lines vary in case: "Braid01")
        kind=kind,
        path=path,
        tags=tags_t,
        ref_vertices=_frozen(np.asarray(refs, np.int64)),
        ref_weights=_frozen(w),
        offsets=_frozen(o),
        scale_refs=_frozen(scale_refs),
        faces=_frozen(faces),
        uvs=_frozen(uvs),
        render_to_fit=_frozen(render_to_fit),
        delete_verts=_frozen(np.unique(np.asarray(deleted, np.int64))),
        z_depth=z_depth,
        material=material,
    )


def _check_body(v: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v, np.float32)
    if v.shape != (N_BODY_VERTICES, 3):
        raise ValueError(f"{what} must be ({N_BODY_VERTICES}, 3) (Anny anny-full), got {v.shape}")
    return v


def mh_scales(garment: Garment, rest_vertices: np.ndarray) -> np.ndarray:
    """(3,) MakeHuman scale factors (x, y, z in MakeHuman axes) of the garment on this rest body
    (Z-up metres): ~1 on a body like the one the garment was made on (a unit mix-up shows as ~10x)."""
    rest = _check_body(rest_vertices, "rest_vertices")
    scale = np.ones(3)
    for i, (a, b, d) in enumerate(garment.scale_refs):
        if a >= 0:
            ax = _SCALE_BODY_AXIS[i]
            scale[i] = abs(float(rest[int(a), ax]) - float(rest[int(b), ax])) / (d * MH_UNIT_M)
    return scale


def rest_offsets(garment: Garment, rest_vertices: np.ndarray) -> np.ndarray:
    """(G, 3) float32 offsets in metres in the body frame (Z up), scaled like MakeHuman does on
    this (rest-pose, unrotated, Z-up metres) body."""
    scale = mh_scales(garment, rest_vertices)
    m = (_MH_TO_BODY * (scale * MH_UNIT_M)[None, :]).astype(np.float32)  # body <- scaled MH
    return garment.offsets @ m.T


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of (3, G) arrays (coordinates first: contiguous rows, and np.cross is slow)."""
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _triangle_frames(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """tri (3 coords, 3 corners, G) -> orthonormal frame x (along edge 0->1), y (in plane),
    z (normal), each (3, G), and ok (G,): False where the triangle is degenerate."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    n = _cross(e1, e2)
    l1 = np.sqrt((e1 * e1).sum(0))
    ln = np.sqrt((n * n).sum(0))
    ok = ln > _DEGENERATE_SIN * l1 * np.sqrt((e2 * e2).sum(0))
    x = e1 / np.maximum(l1, 1e-12)
    z = n / np.maximum(ln, 1e-12)
    return x, _cross(z, x), z, ok


class GarmentFitter:
    """Fits one garment on one body identity (its rest vertices) pose after pose.

    The rest-pose work (MakeHuman scales, offsets expressed in each reference triangle's rest
    frame) is done once here; ``fitter(posed_vertices)`` then only builds the posed frames.
    ``rest_vertices``: the body (same shape parameters) in its rest pose, unrotated, Z up, metres.
    Internally coordinates-first (3, G) arrays: contiguous rows make it ~2x faster.
    """

    def __init__(self, garment: Garment, rest_vertices: np.ndarray):
        rest = _check_body(rest_vertices, "rest_vertices")
        self.garment = garment
        self._refs = np.ascontiguousarray(garment.ref_vertices.T)  # (3 corners, G)
        self._w = np.ascontiguousarray(garment.ref_weights.T)  # (3 corners, G)
        off = np.ascontiguousarray(rest_offsets(garment, rest).T)  # (3, G)
        x, y, z, ok = _triangle_frames(rest.T[:, self._refs])
        self._rest_off = off
        self._local = np.stack([(x * off).sum(0), (y * off).sum(0), (z * off).sum(0)])  # F_rest^T off
        # Degenerate rest triangles with an offset keep it unturned (zero offsets need no frame).
        self._turn = ok | (np.abs(off).max(0) == 0)

    def __call__(self, body_vertices: np.ndarray) -> np.ndarray:
        """Render vertices (R, 3) float32 on the posed body (19158, 3), Z-up metres."""
        posed = _check_body(body_vertices, "body_vertices")
        tri = posed.T[:, self._refs]  # (3 coords, 3 corners, G)
        x, y, z, ok = _triangle_frames(tri)
        lo = self._local
        off = x * lo[0] + y * lo[1] + z * lo[2]  # F_posed @ local
        turn = self._turn & ok
        if not turn.all():
            off = np.where(turn, off, self._rest_off)
        fitted = (tri * self._w).sum(1) + off
        return np.ascontiguousarray(fitted.T[self.garment.render_to_fit])


def fit_garment(
    garment: Garment, body_vertices: np.ndarray, rest_vertices: np.ndarray | None = None
) -> np.ndarray:
    """Garment render vertices (R, 3) float32 on a body (19158, 3) in Z-up metres.

    ``rest_vertices``: the same body (same shape parameters) in its rest pose, unrotated, Z up;
    it sets the MakeHuman scales and the rest frames the offsets are defined in, which are then
    turned with each reference triangle onto the posed ``body_vertices`` (any global rotation /
    translation included). ``None``: ``body_vertices`` is taken as the rest body itself (plain
    MakeHuman evaluation, correct only unposed). For many frames of one body use `GarmentFitter`.
    """
    if rest_vertices is not None:
        return GarmentFitter(garment, rest_vertices)(body_vertices)
    body = _check_body(body_vertices, "body_vertices")
    w, r = garment.ref_weights, garment.ref_vertices
    fitted = np.einsum("gk,gki->gi", w, body[r]) + rest_offsets(garment, body)
    return np.ascontiguousarray(fitted[garment.render_to_fit], dtype=np.float32)

"""MakeHuman clothes and hair on Anny bodies: parsing, fitting under posing, the asset library.

The fit tests pose Anny themselves (its own pose parameters; Anny is Z-up metres already) so they
do not depend on lbi_ros.render.mesh.anny_body. Distances are to the posed body's surface (its 27,420
triangles), computed exactly against the triangles around each point's nearest body vertices.

Bounds, from the vendored assets on male (suits, shoes, short02) / female (female suit, bob02)
Anny bodies, rest + 3 poses (kneel with elbows at 110 deg; arms raised 70 deg with a leg forward
80 deg; arm forward 90 deg, torso twist, a deep knee and a hip at 90 deg):
- clothes and shoes: p95 <= 3 cm, max <= 6 cm. The assets stand off the skin by design (jacket
  hems, cuffs, soles: male_casualsuit04's own offsets reach 4.4 cm, on a helper mesh ~0.6 cm off
  the skin), so "every vertex within 3 cm" does not hold even at rest (measured max 4.8 cm);
- hair: p95 <= 4.5 cm, max <= 8 cm (hair stands off the scalp; bob02 max 5.7 cm);
- posing: the per-vertex change of signed surface distance from rest, p95 <= 1 cm (measured
  <= 0.8 cm); adding rest-frame offsets to the posed body instead gives up to 2.7 cm (shoes) and
  the test checks the difference is caught.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.render.mesh.asset_library import (
    HELD_OUT,
    VENDORED_ROOT,
    AssetLibrary,
    Outfit,
    body_faces_kept,
    hidden_face_mask,
)
from lbi_ros.render.mesh.garments import (
    N_BODY_VERTICES,
    GarmentFitter,
    fit_garment,
    load_garment,
    mh_scales,
)

from .conftest import require_module

REPO = Path(__file__).resolve().parents[1]
# The full CC0 MakeHuman set (not shipped; training passes it with data.mesh.assets_dir): LBI_BODIES_DIR=<bodies>/makehuman
FULL_ROOT = Path(os.environ.get("LBI_BODIES_DIR", "/nonexistent-LBI_BODIES_DIR"))


def _require_full_set() -> None:
    """``external_data`` tests run only when asked for (scripts/test.sh deselects them): then the data must be there."""
    assert FULL_ROOT.is_dir(), "set LBI_BODIES_DIR=<bodies>/makehuman (the full MakeHuman asset set, not shipped)"
VENDORED = {"male_casualsuit04": "clothes", "female_sportsuit01": "clothes", "shoes02": "shoes",
            "short02": "hair", "bob02": "hair"}
# (garment, body gender) pairs the fit is measured on.
FIT_CASES = [("male_casualsuit04", "male"), ("female_sportsuit01", "female"), ("shoes02", "male"),
             ("short02", "male"), ("bob02", "female")]
POSES = {  # bone -> (axis, degrees), Anny "local-ref" rotations (checked visually)
    "rest": {},
    "kneel_elbows": {"lowerarm01.L": ("X", -110), "lowerarm01.R": ("X", -110),
                     "lowerleg01.L": ("X", 110), "lowerleg01.R": ("X", 110)},
    "arms_up_leg_fwd": {"upperarm01.L": ("Y", -70), "upperarm01.R": ("Y", 70), "upperleg01.L": ("X", -80),
                        "upperleg01.R": ("X", 30), "lowerarm01.L": ("X", -90)},
    "twist_sit": {"upperarm01.L": ("X", -90), "upperarm01.R": ("Z", 80), "spine03": ("Y", 30),
                  "head": ("X", 30), "lowerleg01.L": ("X", 120), "upperleg01.R": ("X", -90),
                  "lowerleg01.R": ("X", 90)},
}


# ---------------------------------------------------------------- geometry helpers (numpy only)
def _closest_on_triangles(p, a, b, c):
    """Closest points on triangles (a, b, c) to points p, all (N, 3) (Ericson, RTCD 5.1.5)."""
    ab, ac = b - a, c - a
    d1, d2 = (ab * (p - a)).sum(1), (ac * (p - a)).sum(1)
    d3, d4 = (ab * (p - b)).sum(1), (ac * (p - b)).sum(1)
    d5, d6 = (ab * (p - c)).sum(1), (ac * (p - c)).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        den = va + vb + vc
        q = a + ab * (vb / den)[:, None] + ac * (vc / den)[:, None]
        regions = [
            ((d1 <= 0) & (d2 <= 0), a),
            ((d3 >= 0) & (d4 <= d3), b),
            ((d6 >= 0) & (d5 <= d6), c),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * np.nan_to_num(d1 / (d1 - d3))[:, None]),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * np.nan_to_num(d2 / (d2 - d6))[:, None]),
            ((va <= 0) & (d4 >= d3) & (d5 >= d6),
             b + (c - b) * np.nan_to_num((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None]),
        ]
    done = np.zeros(len(p), bool)
    for cond, val in regions:
        q = np.where((cond & ~done)[:, None], val, q)
        done |= cond
    return q


def signed_surface_distance(points, verts, faces, k=8, chunk=1024):
    """Distance of each point to the mesh, negative inside (by the closest triangle's normal).
    Candidates: the triangles around the k nearest vertices (a miss can only overestimate)."""
    points, verts = np.asarray(points, np.float64), np.asarray(verts, np.float64)
    order = np.argsort(faces.reshape(-1), kind="stable")
    starts = np.searchsorted(faces.reshape(-1)[order], np.arange(len(verts) + 1))
    deg = np.diff(starts)
    adj = np.full((len(verts), deg.max()), -1)
    for j in range(deg.max()):
        has = deg > j
        adj[has, j] = order[starts[:-1][has] + j] // 3
    used = np.unique(faces)
    uv = verts[used]
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s : s + chunk]
        d2 = (uv * uv).sum(1)[None] - 2.0 * p @ uv.T
        cand = adj[used[np.argpartition(d2, k, axis=1)[:, :k]]].reshape(len(p), -1)
        tri = verts[faces[np.maximum(cand, 0)]]  # (n, m, 3, 3)
        pp = np.broadcast_to(p[:, None], cand.shape + (3,)).reshape(-1, 3)
        q = _closest_on_triangles(pp, *(tri[:, :, i].reshape(-1, 3) for i in range(3))).reshape(tri.shape[:3])
        d = np.where(cand >= 0, np.linalg.norm(p[:, None] - q, axis=2), np.inf)
        dmin = d.min(1)
        # Sign: among the triangles tied for closest (a shared edge or vertex), the one the point
        # faces most squarely (a vertex's single triangle normal can point away from outside points).
        n = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
        n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-30)
        facing = ((p[:, None] - q) * n).sum(2)
        facing = np.where(d <= dmin[:, None] + 1e-9, facing, 0.0)
        j = np.abs(facing).argmax(1)
        sign = np.where(facing[np.arange(len(p)), j] < 0, -1.0, 1.0)
        out[s : s + chunk] = dmin * sign
    return out


def test_distance_helper_matches_brute_force():
    rng = np.random.default_rng(0)
    # An octahedron (closed, outward-facing) and points around it.
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    p = rng.normal(size=(400, 3)) * 0.8
    got = signed_surface_distance(p, v, f, k=5)
    tri = v[f]
    brute = np.stack([np.linalg.norm(p - _closest_on_triangles(p, *(np.broadcast_to(t[i], p.shape) for i in range(3))), axis=1)
                      for t in tri]).min(0)
    np.testing.assert_allclose(np.abs(got), brute, atol=1e-12)
    np.testing.assert_array_equal(got < 0, np.abs(p).sum(1) < 1)  # inside the octahedron: |x|+|y|+|z| < 1


# ---------------------------------------------------------------- parsing
@pytest.fixture(scope="module")
def library():
    return AssetLibrary()


def test_vendored_assets_parse(library):
    assert library.root == VENDORED_ROOT
    assert {n: library.kind(n) for n in library.names()} == VENDORED
    assert (VENDORED_ROOT / "LICENSE.txt").read_text().startswith("Creative Commons Legal Code")
    for name in library.names():
        g = library.get(name)
        assert g is library.get(name) is load_garment(g.path) is load_garment(str(g.path), kind=g.kind)  # parsed once
        assert g.name == name and g.kind == VENDORED[name]
        G, R = g.n_fit, g.n_render
        assert g.ref_vertices.shape == (G, 3) and g.ref_weights.shape == (G, 3) and g.offsets.shape == (G, 3)
        assert 0 <= g.ref_vertices.min() and g.ref_vertices.max() < N_BODY_VERTICES
        np.testing.assert_allclose(g.ref_weights.sum(1), 1.0, atol=0.02)
        assert g.faces.dtype == np.int32 and g.faces.shape[1] == 3 and 0 <= g.faces.min() and g.faces.max() < R
        assert (g.faces[:, 0] != g.faces[:, 1]).all() and (g.faces[:, 1] != g.faces[:, 2]).all()
        assert g.uvs.shape == (R, 2) and (g.uvs >= 0).all() and (g.uvs <= 1).all()
        # Unwelded at UV seams: every garment vertex is rendered, some more than once.
        assert set(np.unique(g.render_to_fit)) == set(range(G)) and G < R < 1.3 * G
        assert (np.diff(g.delete_verts) > 0).all() and (len(g.delete_verts) == 0 or g.delete_verts.max() < N_BODY_VERTICES)
        assert (len(g.delete_verts) > 1000) == (g.kind in ("clothes", "shoes"))
        assert g.scale_refs[:, 2].min() > 0 and g.z_depth == (5 if g.kind == "shoes" else 50)
        with pytest.raises(ValueError):
            g.offsets[0, 0] = 1.0  # read-only: garments are shared through the cache


@pytest.mark.external_data
def test_full_asset_set_parses():
    _require_full_set()
    lib = AssetLibrary(FULL_ROOT)
    assert len(lib.names("clothes")) == 12 and len(lib.names("shoes")) == 6 and len(lib.names("hair")) == 10
    assert lib.names("hat") == ["fedora", "fedora_cocked"]
    assert set(lib.names(split="heldout")) == set(HELD_OUT)
    for name in lib.names():
        g = lib.get(name)
        assert g.n_render >= g.n_fit > 500 and len(g.faces) > 1000


def _copy_garment(tmp_path, name="male_casualsuit04"):
    src = VENDORED_ROOT / "clothes" / name
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path / f"{name}.mhclo", (tmp_path / f"{name}.mhclo").read_text().splitlines()


def _vertex_line(lines):
    return next(i for i, s in enumerate(lines) if s.strip() == "verts 0") + 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls, i: ls.__setitem__(i, "19158" + ls[i][ls[i].index(" "):]), r"\.mhclo:\d+: body vertex out of range"),
        (lambda ls, i: ls.__setitem__(i, ls[i].rsplit(" ", 1)[0]), r"\.mhclo:\d+: a vertex line needs 1 or 9 columns, got 8"),
        (lambda ls, i: ls.__setitem__(i, ls[i].replace(" ", " x", 1)), r"\.mhclo:\d+: invalid literal"),
        (lambda ls, i: ls.__setitem__(next(j for j, s in enumerate(ls) if s.startswith("obj_file")), "obj_file gone.obj"),
         r"gone\.obj: obj file not found"),
        (lambda ls, i: ls.__setitem__(next(j for j, s in enumerate(ls) if s.startswith("x_scale")), "x_scale 5399 11998"),
         r"\.mhclo:\d+: x_scale needs 3 values"),
        (lambda ls, i: ls.__delitem__(i), r"1695 vertex lines but .*male_casualsuit04\.obj has 1696 vertices"),
        (lambda ls, i: ls.append("999999"), r"\.mhclo:\d+: delete_verts vertex out of range"),
    ],
    ids=["bad_index", "wrong_columns", "not_a_number", "missing_obj", "bad_scale", "count_mismatch", "bad_delete"],
)
def test_malformed_mhclo_raises(tmp_path, edit, message):
    path, lines = _copy_garment(tmp_path)
    edit(lines, _vertex_line(lines))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        load_garment(path)


def test_malformed_obj_raises(tmp_path):
    path, _ = _copy_garment(tmp_path)
    obj = tmp_path / "male_casualsuit04.obj"
    obj.write_text(obj.read_text() + "f 1/1 2/2 99999/3\n")
    with pytest.raises(ValueError, match=r"male_casualsuit04\.obj:\d+: face corner '99999/3' out of range"):
        load_garment(path)
    with pytest.raises(ValueError, match="mhclo file not found"):
        load_garment(tmp_path / "nothing.mhclo")


# ---------------------------------------------------------------- fitting on posed Anny bodies
@pytest.fixture(scope="module")
def anny_bodies():
    """{gender: [(pose name, posed (19158, 3), rest (19158, 3))]} and the body's triangles."""
    torch = require_module("torch")
    anny = require_module("anny")
    anny_paths = require_module("anny.paths")

    torch.set_num_threads(1)
    anny_paths.set_anny_cache_path(REPO / ".cache" / "anny")
    model = anny.Anny(topology="anny-full")  # MakeHuman topologies only (never SMPL/SMPL-X/SOMA)

    def rot(axis, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
        t = np.eye(4)
        t[i, i], t[i, j], t[j, i], t[j, j] = c, -s, s, c
        return torch.as_tensor(t)[None]

    out = {}
    with torch.no_grad():
        for gender, value in (("male", 1.0), ("female", 0.0)):
            rest = model(phenotype_kwargs={"gender": value})["vertices"][0].numpy().astype(np.float32)
            out[gender] = []
            for name, pose in POSES.items():
                params = {bone: rot(*ad) for bone, ad in pose.items()} or None
                v = model(pose_parameters=params, phenotype_kwargs={"gender": value})["vertices"][0]
                out[gender].append((name, v.numpy().astype(np.float32), rest))
    faces = model.get_triangular_faces().numpy()
    assert out["male"][0][1].shape == (N_BODY_VERTICES, 3)
    return out, faces


def test_units_and_axes_match_anny(anny_bodies, library):
    """The mhclo reference distances (MakeHuman decimetres, Y up) measured on Anny (metres, Z up)
    give scales ~1: a unit or axis mix-up would give ~10x or a wrong axis (scales far from 1)."""
    bodies, _ = anny_bodies
    for name, gender in FIT_CASES:
        scales = mh_scales(library.get(name), bodies[gender][0][2])
        assert np.all((scales > 0.8) & (scales < 1.2)), (name, scales)


def test_fit_at_rest_is_makehuman_and_rigid_motion_equivariant(anny_bodies, library):
    bodies, _ = anny_bodies
    _, posed, rest = bodies["male"][1]
    g = library.get("male_casualsuit04")
    np.testing.assert_allclose(GarmentFitter(g, rest)(rest), fit_garment(g, rest), atol=1e-6)
    # A posed body moved rigidly in the world: the garment moves with it.
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    t = np.array([3.0, -1.0, 0.5], np.float32)
    moved = fit_garment(g, posed @ q.T.astype(np.float32) + t, rest)
    np.testing.assert_allclose(moved, fit_garment(g, posed, rest) @ q.T + t, atol=1e-4)  # float32 at 3 m


@pytest.mark.parametrize("name, gender", FIT_CASES)
def test_garment_stays_on_posed_body(anny_bodies, library, name, gender):
    bodies, faces = anny_bodies
    g = library.get(name)
    first = np.unique(g.render_to_fit, return_index=True)[1]  # one render vertex per garment vertex
    p95_max, max_max = (0.045, 0.08) if g.kind == "hair" else (0.03, 0.06)
    d_rest = None
    lines = []
    for pose, posed, rest in bodies[gender]:
        fitter = GarmentFitter(g, rest)
        fitted = fitter(posed)
        assert fitted.shape == (g.n_render, 3) and fitted.dtype == np.float32
        t0 = time.perf_counter()
        for _ in range(20):
            fitter(posed)
        us = (time.perf_counter() - t0) / 20 * 1e6
        d = signed_surface_distance(fitted[first], posed, faces)
        d_rest = d if d_rest is None else d_rest
        change = np.abs(d - d_rest)
        p50, p95, p99, dmax = np.percentile(np.abs(d), [50, 95, 99, 100])
        lines.append(f"{name:18s} {gender:6s} {pose:15s} |d| cm p50 {p50 * 100:.1f} p95 {p95 * 100:.1f} "
                     f"p99 {p99 * 100:.1f} max {dmax * 100:.1f}; change from rest p95 "
                     f"{np.percentile(change, 95) * 100:.2f}; {us:.0f} us/frame ({g.n_fit} vertices)")
        assert p95 <= p95_max and dmax <= max_max, lines[-1]
        assert np.percentile(change, 95) <= 0.01, lines[-1]
        if pose == "kneel_elbows" and g.kind != "hair":
            # Rest-frame offsets added to the posed body (no rotation) are measurably wrong here.
            naive = fit_garment(g, posed)[first]
            naive_change = np.abs(signed_surface_distance(naive, posed, faces) - d_rest)
            assert np.percentile(naive_change, 95) > 2 * np.percentile(change, 95) + 0.002
    print("\n" + "\n".join(lines))


def test_body_faces_kept(anny_bodies, library):
    _, faces = anny_bodies
    outfit = Outfit(suit=library.get("male_casualsuit04"), shoes=library.get("shoes02"), hair=library.get("short02"))
    assert [g.kind for g in outfit.garments] == ["shoes", "clothes", "hair"]  # z_depth order
    hidden = np.zeros(N_BODY_VERTICES, bool)
    hidden[outfit.delete_verts] = True
    assert hidden[library.get("shoes02").delete_verts].all() and hidden[library.get("male_casualsuit04").delete_verts].all()
    kept = body_faces_kept(outfit, faces)
    mask = hidden_face_mask(outfit, faces)
    assert len(kept) == (~mask).sum() and 0.2 * len(faces) < len(kept) < 0.8 * len(faces)
    assert not hidden[kept].all(1).any() and hidden[faces[mask]].all()
    bald = Outfit(suit=library.get("female_sportsuit01"))
    assert len(body_faces_kept(bald, faces)) < len(faces)
    tiny = np.array([[0, 1, 2], [0, 1, 19157]])
    fake = Outfit(suit=library.get("male_casualsuit04"))
    expect = [set(f) <= set(fake.delete_verts.tolist()) for f in tiny.tolist()]
    assert hidden_face_mask(fake, tiny).tolist() == expect


# ---------------------------------------------------------------- outfits and the held-out split
def _draws(lib, seed, split, n=200, gender=None):
    rng = np.random.default_rng(seed)
    return [lib.sample_outfit(rng, split, gender=gender) for _ in range(n)]


@pytest.mark.parametrize("root", [None, pytest.param(FULL_ROOT, marks=pytest.mark.external_data)],
                         ids=["vendored", "full"])
def test_sample_outfit_splits_and_determinism(root):
    if root is not None:
        _require_full_set()
    lib = AssetLibrary(root)
    a = _draws(lib, 7, "train")
    assert [o.names for o in a] == [o.names for o in _draws(lib, 7, "train")]
    assert [o.names for o in a] != [o.names for o in _draws(lib, 8, "train")]
    train_items = {n for o in a for n in o.names}
    assert not train_items & HELD_OUT
    assert {o.suit.name for o in a} == set(lib.names("clothes", "train"))
    with_shoes = np.mean([o.shoes is not None for o in a])
    bald = np.mean([o.hair is None for o in a])
    assert 0.7 < with_shoes < 0.97 and 0.03 < bald < 0.3
    assert all(o.hat is None or o.hair is None or "short" in o.hair.tags for o in a)
    held = _draws(lib, 7, "heldout")
    held_items = {n for o in held for n in o.names}
    assert held_items <= HELD_OUT
    assert held_items == set(lib.names(split="heldout"))  # every available held-out item shows up
    if root is None:
        assert held_items == {"female_sportsuit01", "bob02"}
    female = _draws(lib, 3, "train", gender="female")
    if lib.names("clothes", "train") and any(n.startswith("female") for n in lib.names("clothes", "train")):
        assert all(not o.suit.name.startswith("male") for o in female)
    with pytest.raises(ValueError, match="split"):
        lib.names("clothes", "test")


def test_library_errors(tmp_path):
    with pytest.raises(ValueError, match="no suits"):
        AssetLibrary(tmp_path)
    with pytest.raises(KeyError, match="no garment"):
        AssetLibrary().get("tuxedo")
    assert re.fullmatch(r"[a-z0-9_]+", AssetLibrary().names()[0])

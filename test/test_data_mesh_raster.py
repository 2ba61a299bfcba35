"""Headless GL mesh rasterizer (EGL) and procedural textures.

The rasterizer tests need a working EGL OpenGL context (Mesa llvmpipe on CPU-only machines); they FAIL,
never skip, without one: scripts/setup.sh installs the EGL packages.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.render.mesh.mesh_raster import (
    NEAR_M,
    Lighting,
    MeshInstance,
    MeshRasterizer,
    composite,
    sample_lighting,
    split_uv_seams,
)
from lbi_ros.render.mesh.textures import (
    CLOTH_KINDS,
    hair_texture,
    make_texture,
    sample_cloth_texture,
    sample_hair_colour,
    sample_skin_tone,
    skin_texture,
)

FLAT = Lighting(ambient=1.0, diffuse=0.0)  # rgb = albedo exactly


def _solid(colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (4, 4, 3)).copy()


def _quad(x0, x1, y0, y1, z, person_id=0, colour=(200, 40, 30), **kw) -> MeshInstance:
    """Axis-aligned quad at depth z facing the camera, outward (-z) counter-clockwise winding."""
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], np.float32)
    faces = np.array([[0, 2, 1], [0, 3, 2]], np.uint32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return MeshInstance(v, faces, uv, _solid(colour), person_id, **kw)


def _sphere(centre, radius, texture, person_id=0, rings=24, segs=32) -> MeshInstance:
    """Closed UV sphere with outward counter-clockwise faces (checked here)."""
    th = np.linspace(0, np.pi, rings + 1)[:, None]
    ph = np.linspace(0, 2 * np.pi, segs + 1)[None]
    dirs = np.stack([np.sin(th) * np.cos(ph), -np.cos(th) + 0 * ph, np.sin(th) * np.sin(ph)], -1)
    v = (dirs.reshape(-1, 3) * radius + centre).astype(np.float32)
    uv = np.stack([ph / (2 * np.pi) + 0 * th, th / np.pi + 0 * ph], -1).reshape(-1, 2).astype(np.float32)
    a = (np.arange(rings)[:, None] * (segs + 1) + np.arange(segs)[None]).ravel()
    faces = np.concatenate(
        [np.stack([a, a + segs + 1, a + 1], 1), np.stack([a + 1, a + segs + 1, a + segs + 2], 1)]
    )
    p = v[faces].astype(np.float64)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    ok = np.linalg.norm(n, axis=1) < 1e-12  # degenerate pole triangles
    assert np.all(ok | (np.einsum("ij,ij->i", n, p.mean(1) - centre) > 0))
    return MeshInstance(v, faces.astype(np.uint32), uv, texture, person_id)


@pytest.fixture(scope="module")
def raster() -> MeshRasterizer:
    r = MeshRasterizer(max_height=192, max_width=256, threads=1)
    yield r
    r.close()


def test_egl_smoke_render_covers_expected_pixels(raster: MeshRasterizer) -> None:
    k = Intrinsics(fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    try:
        layer = raster.draw([_quad(-0.2, 0.2, -0.1, 0.1, 1.0, person_id=3)], k, 48, 64, FLAT)
    except RuntimeError as exc:  # no EGL: a broken install, not a reason to skip
        pytest.fail(f"headless EGL/OpenGL is unavailable: {exc}")
    assert raster.renderer_name, "empty GL_RENDERER"
    # Edges project to u = 21.5 / 41.5 and v = 18.5 / 28.5: pixel boundaries, so centres 22..41, 19..28.
    expected = np.zeros((48, 64), bool)
    expected[19:29, 22:42] = True
    np.testing.assert_array_equal(layer.coverage > 0, expected)
    assert layer.rgb.shape == (48, 64, 3) and layer.rgb.dtype == np.uint8
    assert np.abs(layer.rgb[expected].astype(int) - [200, 40, 30]).max() <= 1
    assert not layer.rgb[~expected].any()
    np.testing.assert_array_equal(layer.person_ids, np.where(expected, 3, -1).astype(np.int16))
    assert layer.depth is None


def test_projection_matches_geometry_project(raster: MeshRasterizer) -> None:
    """Pixels whose centres lie inside the triangles projected by ``geometry.project`` are drawn, and
    those outside are not (away from a 0.02 px band around the edges): a sub-pixel test of the mapping."""
    h, w = 60, 80
    k = Intrinsics(fx=70.0, fy=64.0, cx=37.3, cy=31.8)
    rng = np.random.default_rng(5)
    meshes, tris_px = [], []
    for i in range(6):  # one small triangle per grid cell, random depth, slanted, separate ids
        u0, v0 = 8 + 24 * (i % 3), 8 + 26 * (i // 3)
        px = np.array([u0, v0]) + [[0, 0], [14, 2], [3, 15]] + rng.uniform(-2, 2, (3, 2))
        z = rng.uniform(1.0, 4.0) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([(px[:, 0] - k.cx) / k.fx * z, (px[:, 1] - k.cy) / k.fy * z, z], 1)
        tris_px.append(project(pts, k))
        meshes.append(
            MeshInstance(
                pts.astype(np.float32),
                np.array([[0, 1, 2]]),
                np.zeros((3, 2), np.float32),
                _solid((90, 90, 90)),
                person_id=i,
                double_sided=True,
            )  # fmt: skip
        )
    layer = raster.draw(meshes, k, h, w, FLAT)
    vv, uu = np.mgrid[0:h, 0:w]
    for i, t in enumerate(tris_px):
        d = [(t[(j + 1) % 3, 0] - t[j, 0]) * (vv - t[j, 1]) - (t[(j + 1) % 3, 1] - t[j, 1]) * (uu - t[j, 0])
             for j in range(3)]  # fmt: skip
        d = [dj / np.hypot(*(t[(j + 1) % 3] - t[j])) for j, dj in enumerate(d)]  # signed distances (px)
        e1, e2 = t[1] - t[0], t[2] - t[0]
        sign = np.sign(e1[0] * e2[1] - e1[1] * e2[0])  # interior side, either winding
        inside = np.all([sign * dj > 0.02 for dj in d], axis=0)
        outside = np.any([sign * dj < -0.02 for dj in d], axis=0)
        assert inside.sum() > 5
        drawn = layer.person_ids == i
        assert drawn[inside].all(), f"triangle {i}: pixels inside the projected triangle not drawn"
        assert not drawn[outside].any(), f"triangle {i}: pixels outside the projected triangle drawn"


def test_zbuffer_nearer_person_wins_and_depth_is_metric(raster: MeshRasterizer) -> None:
    k = Intrinsics(fx=100.0, fy=100.0, cx=63.5, cy=47.5)
    far = _quad(-0.6, 0.3, -0.3, 0.3, 3.0, person_id=0, colour=(0, 0, 255))
    near = _quad(-0.1, 0.5, -0.2, 0.2, 2.0, person_id=1, colour=(255, 0, 0))
    for order in ([far, near], [near, far]):
        layer = raster.draw(order, k, 96, 128, FLAT, want_depth=True)
        assert layer.person_ids[47, 70] == 1 and layer.person_ids[47, 50] == 0  # overlap / far only
        assert layer.person_ids[47, 80] == 1 and layer.person_ids[5, 5] == -1
        assert tuple(layer.rgb[47, 70]) == (255, 0, 0)
        assert abs(layer.depth[47, 70] - 2.0) < 0.01 and abs(layer.depth[47, 50] - 3.0) < 0.01
        assert np.isinf(layer.depth[5, 5])
        ids = layer.person_ids
        assert np.all(np.abs(layer.depth[ids == 0] - 3.0) < 0.01) and np.all(
            np.abs(layer.depth[ids == 1] - 2.0) < 0.01
        )


def test_back_faces_culled_and_front_of_sphere_visible(raster: MeshRasterizer) -> None:
    k = Intrinsics(fx=100.0, fy=100.0, cx=63.5, cy=47.5)
    sphere = _sphere(np.array([0.0, 0.0, 2.5]), 0.4, make_texture(np.random.default_rng(0), "checks"))
    layer = raster.draw([sphere], k, 96, 128, sample_lighting(np.random.default_rng(1)), want_depth=True)
    assert abs(layer.depth[47, 63] - 2.1) < 0.01  # the front surface, not the back (2.9 m)
    r_px = 100 * 0.4 / np.sqrt(2.5**2 - 0.4**2)  # silhouette radius of a sphere in pixels
    assert abs(layer.coverage.sum() - np.pi * r_px**2) < 0.05 * np.pi * r_px**2
    flipped = _quad(-0.2, 0.2, -0.1, 0.1, 1.0)
    flipped.faces = flipped.faces[:, ::-1].copy()  # faces away from the camera: culled
    assert raster.draw([flipped], k, 96, 128).coverage.sum() == 0
    flipped.double_sided = True
    assert raster.draw([flipped], k, 96, 128).coverage.sum() > 0


def test_geometry_behind_the_camera_is_clipped(raster: MeshRasterizer) -> None:
    """A floor 0.5 m below the camera from z = -2 m to 6 m: only its part beyond the near plane is
    drawn, all below the horizon (a wrapped-around back part would appear above it)."""
    k = Intrinsics(fx=60.0, fy=60.0, cx=63.5, cy=47.5)
    v = np.array([[-3, 0.5, -2], [3, 0.5, -2], [3, 0.5, 6], [-3, 0.5, 6]], np.float32)
    floor = MeshInstance(v, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros((4, 2), np.float32), _solid((50, 200, 50)),
                         double_sided=True)  # fmt: skip
    layer = raster.draw([floor], k, 96, 128, FLAT, want_depth=True)
    assert layer.coverage[:48].sum() == 0 and layer.coverage[60:].all()
    assert np.nanmin(layer.depth) >= NEAR_M and np.isfinite(layer.depth[60:]).all()
    assert np.all(layer.rgb[60:] == (50, 200, 50))


def _scene(seed: int) -> list[MeshInstance]:
    rng = np.random.default_rng(seed)
    return [
        _sphere(np.array([-0.3, 0.0, 3.0]), 0.5, sample_cloth_texture(rng), person_id=0),
        _sphere(np.array([0.4, 0.1, 3.5]), 0.5, skin_texture(rng, sample_skin_tone(rng)), person_id=1),
        _quad(-2, 2, -2, 2, 6.0, person_id=2, colour=(10, 120, 200)),
    ]


def test_render_is_deterministic(raster: MeshRasterizer) -> None:
    k = Intrinsics(fx=120.0, fy=120.0, cx=63.5, cy=47.5)
    light = sample_lighting(np.random.default_rng(3))
    a = raster.draw(_scene(0), k, 96, 128, light)
    raster.draw(_scene(1), k, 192, 256, FLAT)  # something else in between
    b = raster.draw(_scene(0), k, 96, 128, light)
    assert a.rgb.tobytes() == b.rgb.tobytes() and a.person_ids.tobytes() == b.person_ids.tobytes()
    assert set(np.unique(a.person_ids)) == {-1, 0, 1, 2}
    bg = np.full((96, 128, 3), 77, np.uint8)
    out = composite(a, bg)
    np.testing.assert_array_equal(out[a.coverage == 1], a.rgb[a.coverage == 1])
    np.testing.assert_array_equal(out[a.coverage == 0], bg[a.coverage == 0])


def _child_draw(raster: MeshRasterizer, k: Intrinsics, queue) -> None:
    queue.put(raster.draw(_scene(0), k, 96, 128).rgb.tobytes())


def test_forked_worker_recreates_context_and_matches(raster: MeshRasterizer) -> None:
    """DataLoader-style: the parent drew, a forked child draws with its own context, same pixels."""
    k = Intrinsics(fx=120.0, fy=120.0, cx=63.5, cy=47.5)
    expected = raster.draw(_scene(0), k, 96, 128).rgb.tobytes()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_draw, args=(raster, k, queue))
    proc.start()
    try:
        got = queue.get(timeout=30)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    assert got == expected
    clone = pickle.loads(pickle.dumps(raster))  # spawn workers: pickles without GL state
    assert clone._gl is None and clone.threads == raster.threads


def test_bad_input_rejected(raster: MeshRasterizer) -> None:
    k = Intrinsics(fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    bad = _quad(-0.2, 0.2, -0.1, 0.1, 1.0)
    bad.faces = np.array([[0, 1, 4]])
    with pytest.raises(ValueError, match="out of range"):
        raster.draw([bad], k, 48, 64)
    with pytest.raises(ValueError, match="outside"):
        raster.draw([], k, 500, 64)
    assert raster.draw([], k, 48, 64).coverage.sum() == 0


def test_split_uv_seams_keeps_every_corner() -> None:
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    face_uv = np.array([[0, 1, 2], [4, 1, 3]])  # vertex 2 has two UVs (a seam)
    vi, ti, new_faces = split_uv_seams(faces, face_uv)
    assert len(vi) == 5 and new_faces.dtype == np.uint32
    np.testing.assert_array_equal(vi[new_faces], faces)
    np.testing.assert_array_equal(ti[new_faces], face_uv)


# ---------------------------------------------------------------------------------------------------------
# Textures
# ---------------------------------------------------------------------------------------------------------


def test_textures_deterministic_and_kinds_differ() -> None:
    images = {}
    for kind in CLOTH_KINDS:
        a = make_texture(np.random.default_rng(11), kind)
        b = make_texture(np.random.default_rng(11), kind)
        assert a.shape == (64, 64, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        images[kind] = a.astype(int)
    for i, ka in enumerate(CLOTH_KINDS):
        for kb in CLOTH_KINDS[i + 1 :]:
            assert np.abs(images[ka] - images[kb]).mean() > 5, (ka, kb)
    for fn in (
        lambda r: sample_cloth_texture(r, size=32),
        lambda r: skin_texture(r, sample_skin_tone(r)),
        lambda r: hair_texture(r, sample_hair_colour(r)),
    ):
        np.testing.assert_array_equal(fn(np.random.default_rng(4)), fn(np.random.default_rng(4)))
    assert make_texture(np.random.default_rng(0), "stripes", size=32).shape == (32, 32, 3)
    with pytest.raises(ValueError):
        make_texture(np.random.default_rng(0), "leopard")  # type: ignore[arg-type]


def test_textures_tile_seamlessly() -> None:
    """The wrap seam (last -> first column / row) is no sharper than the sharpest inner transition."""
    rng = np.random.default_rng(2)
    for kind in CLOTH_KINDS:
        for _ in range(3):
            t = make_texture(rng, kind).astype(float)
            for axis in (0, 1):
                inner = np.abs(np.diff(t, axis=axis)).mean(axis=(1 - axis, 2)).max()
                seam = np.abs(np.take(t, 0, axis) - np.take(t, -1, axis)).mean()
                assert seam <= inner + 2, (kind, axis, seam, inner)


def test_skin_tones_span_light_to_dark() -> None:
    rng = np.random.default_rng(0)
    tones = np.stack([sample_skin_tone(rng) for _ in range(400)]).astype(float)
    luma = tones @ [0.299, 0.587, 0.114]
    assert luma.min() < 50 and luma.max() > 215
    assert 0.25 < np.mean(luma < 130) < 0.75  # dark and light skin about equally likely
    assert np.all(tones[:, 0] >= tones[:, 2])  # skin: red >= blue
    hair = np.stack([sample_hair_colour(rng) for _ in range(200)]).astype(float) @ [0.299, 0.587, 0.114]
    assert hair.min() < 30 and hair.max() > 150

"""Numpy renderer of a shaded capsule-body person, drawn directly into the model's crop.

Why this design (measured prototype: docs/cpu_budget.md part B): work restricted to each
primitive's screen bounding box keeps the cost proportional to covered pixels, and rendering the crop
directly (the camera's intrinsics mapped into the crop, :meth:`CropBox.crop_intrinsics`) avoids rendering
a full frame and warping it. At 128 x 96 a per-primitive Python loop spends most of its time in numpy call
overhead, so all primitives are evaluated in one batch on windows padded to a common size (two size
classes), and their covered pixels are z-resolved together with ``np.minimum.at``.

Body model: 18 primitives, each a *tapered capsule* (sphere-swept cone) between two 3D points with radii
``(ra, rb)``, or a sphere when both points coincide: head, hair cap, neck, torso core (pelvis to thorax),
two torso halves (hip to shoulder; trousers below a belt line), upper arms, forearms, hands, thighs,
shins, feet. They are drawn as screen-space impostors: for a pixel p, the closest point on the projected
axis gives the axis parameter s, the projected radius ``r(s)`` and the normalised offset
``q = |p - axis(s)|^2 / r(s)^2``. Inside (q < 1) the surface depth is ``z(s) - R * sqrt(1 - q)`` and the
camera-frame normal is ``(dx/r, dy/r, -sqrt(1 - q))``. This is exact for spheres up to perspective
foreshortening of the radius and a close approximation for limbs; a per-pixel z-buffer resolves overlaps
between primitives.

Shading: Lambert with one random directional light + ambient, per-material albedo (skin, hair, shirt,
sleeves, pants, lower legs, shoes), optional stripes along a primitive's axis. Backgrounds: plain
gradients, smooth noise, procedural textures (stripes, checkers, bricks, rings) and clutter (random
shapes), drawn from a bank generated once from ``bank_seed`` and varied per sample by window, flip, channel
order and gain. Optional occluder, blur and sensor noise. Pixels of the crop that fall outside the full
camera image are black, exactly as ``cv2.warpAffine`` with a constant border gives at deployment.

Everything random comes from the ``np.random.Generator`` passed in, so a crop is a deterministic function
of the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lbi_ros.geometry import Intrinsics
from lbi_ros.render.backgrounds import BACKGROUND_KINDS as _BACKGROUND_KINDS
from lbi_ros.render.backgrounds import BackgroundBank
from lbi_ros.render.capsule.body_model import (
    _IS_TORSO,
    _NEAR_M,
    _PRIM_A,
    _PRIM_B,
    _PRIM_BELT,
    _PRIM_MAT,
    _PRIM_RA,
    _PRIM_RB,
    BODY_PRIMITIVES,
    NO_HIT,
    PALETTE_ROWS,
    PANTS,
    STRIPE_OFFSET,
    Appearance,
    RenderConfig,
    body_points,
    sample_appearance,
)


class PersonRenderer:
    """Renders capsule people into crops or full frames. Holds the background and noise banks (build once
    per worker: about 0.3 s)."""

    def __init__(self, config: RenderConfig = RenderConfig()) -> None:  # noqa: B008 - a frozen dataclass
        self.config = config
        self.bank = BackgroundBank(config)
        p = np.asarray(config.background_probs, dtype=np.float64)
        self._bg_cdf = np.cumsum(p / p.sum())
        # Sensor-noise bank: int16 Gaussian noise at a few strengths, windowed per sample.
        rng = np.random.default_rng(config.bank_seed + 1)
        r = config.bank_resolution
        unit = rng.standard_normal((r, r, 3))
        levels = np.linspace(0.0, config.sensor_noise_max, 5)[1:]
        self._noise = [np.round(unit * lv).astype(np.int16) for lv in levels]

    def render(
        self,
        joints_cam: np.ndarray,
        intrinsics: Intrinsics,
        height: int,
        width: int,
        rng: np.random.Generator,
        toes_cam: np.ndarray | None = None,
        appearance: Appearance | None = None,
        valid_region: tuple[float, float, float, float] | None = None,
        resolution_scale: float = 1.0,
    ) -> np.ndarray:
        """Render one person (H36M-17 joints in the camera frame, metres) -> (height, width, 3) uint8 RGB.

        ``intrinsics`` are those of the rendered image (for a crop: ``CropBox.crop_intrinsics``).
        ``valid_region`` = (x0, y0, x1, y1) in this image's pixel coordinates: the part that lies inside
        the real camera image; pixels outside are set to black (deployment crops see the warp border there).
        ``resolution_scale`` < 1 renders at that fraction of the size and upsamples bilinearly: what the
        deployment warp does to a person who is smaller in the camera image than the crop (pass
        ``box.h / crop_height``); it also saves time.
        """
        cfg = self.config
        app = appearance if appearance is not None else sample_appearance(rng, cfg)
        u = rng.random(6)
        h_r, w_r, intr = working_grid(intrinsics, height, width, resolution_scale)
        image = self.background(u[0], rng, h_r, w_r)
        ids, shade = self._rasterize(body_points(joints_cam, toes_cam), intr, h_r, w_r, app)
        composite(image, ids, shade, app.palette)  # albedo x shade where the body was hit
        return self.finish(image, u, rng, height, width, valid_region)

    def background(self, u: float, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A (height, width, 3) uint8 background of the kind that ``u`` in [0, 1) picks by
        ``background_probs``."""
        kind = _BACKGROUND_KINDS[min(int(np.searchsorted(self._bg_cdf, u, side="right")), 3)]
        return self.bank.sample(rng, height, width, kind)

    def finish(
        self,
        image: np.ndarray,
        u: np.ndarray,
        rng: np.random.Generator,
        height: int,
        width: int,
        valid_region: tuple[float, float, float, float] | None,
    ) -> np.ndarray:
        """Occluder, blur and sensor noise on the working grid, upsampling to (height, width), then black
        outside ``valid_region``. ``u`` (6,) uniforms drawn before the background; shared by every body
        kind so capsule and mesh people get the same photometric treatment."""
        import cv2

        cfg = self.config
        h_r, w_r = image.shape[:2]
        if u[1] < cfg.occluder_prob:
            self._occlude(image, rng)
        if u[2] < cfg.blur_prob:
            image = cv2.GaussianBlur(image, (0, 0), 0.5 + 0.8 * u[3])
        level = int(u[4] * (len(self._noise) + 1))  # 0 = no sensor noise
        if level > 0:
            bank = self._noise[level - 1]
            if h_r > bank.shape[0] or w_r > bank.shape[1]:  # full frames: tile the bank
                bank = np.tile(bank, (-(-h_r // bank.shape[0]), -(-w_r // bank.shape[1]), 1))
            y0 = int(u[5] * (bank.shape[0] - h_r))
            x0 = int(u[3] * (bank.shape[1] - w_r))
            image = cv2.add(image, bank[y0 : y0 + h_r, x0 : x0 + w_r], dtype=cv2.CV_8U)
        if h_r != height:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if valid_region is not None:
            x0, y0, x1, y1 = valid_region
            c0, r0 = max(0, math.ceil(x0)), max(0, math.ceil(y0))
            c1, r1 = min(width, math.floor(x1) + 1), min(height, math.floor(y1) + 1)
            if c0 > 0 or r0 > 0 or c1 < width or r1 < height:
                out = np.zeros_like(image)
                if c1 > c0 and r1 > r0:
                    out[r0:r1, c0:c1] = image[r0:r1, c0:c1]
                image = out
        return image

    def _occlude(self, image: np.ndarray, rng: np.random.Generator) -> None:
        h, w = image.shape[:2]
        ow, oh = int(rng.uniform(0.2, 0.6) * w), int(rng.uniform(0.15, 0.5) * h)
        side = int(rng.integers(4))
        if side == 0:
            x0, y0 = int(rng.integers(0, max(1, w - ow))), h - oh  # bottom (furniture)
        elif side == 1:
            x0, y0 = 0, int(rng.integers(0, max(1, h - oh)))
        elif side == 2:
            x0, y0 = w - ow, int(rng.integers(0, max(1, h - oh)))
        else:
            x0, y0 = int(rng.integers(0, max(1, w - ow))), int(rng.integers(0, max(1, h - oh)))
        kind = ("plain", "noise", "texture", "clutter")[int(rng.integers(4))]
        patch = self.bank.sample(rng, oh, ow, kind)
        image[y0 : y0 + oh, x0 : x0 + ow] = patch

    def _rasterize(
        self, points: np.ndarray, intr: Intrinsics, height: int, width: int, app: Appearance
    ) -> tuple[np.ndarray, np.ndarray]:
        """One person: see :func:`rasterize_people` (material ids are the palette rows of ``app``)."""
        return rasterize_people([points], [app], intr, height, width)


def rasterize_people(
    points: Sequence[np.ndarray], apps: Sequence[Appearance], intr: Intrinsics, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered impostor rasterisation of people -> (ids (H, W) uint8, shade (H, W) float32).

    ``points[k]`` are person k's 24 body points (:func:`body_points`), camera frame. ``ids`` are rows of
    the people's stacked palettes (person k's material m -> ``k * PALETTE_ROWS + m``; ``NO_HIT`` where
    nothing was hit), so at most 15 people. The light and ambient level of ``apps[0]`` light the scene.

    All primitives are evaluated together, each on its own screen window padded to a common size (two
    size classes), because per-call numpy overhead, not arithmetic, dominates at crop sizes. The covered
    pixels ("fragments") of all primitives are then z-resolved with one ``np.minimum.at``.
    """
    n_people = len(points)
    if n_people != len(apps) or not 1 <= n_people <= 255 // PALETTE_ROWS:
        raise ValueError(f"need 1..{255 // PALETTE_ROWS} people with one appearance each, got {n_people}")
    n_prims = len(BODY_PRIMITIVES)
    girth = np.concatenate([np.where(_IS_TORSO, a.girth, 0.5 + 0.5 * a.girth) for a in apps])  # limbs: half
    ra_m, rb_m = np.tile(_PRIM_RA, n_people) * girth, np.tile(_PRIM_RB, n_people) * girth
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in points])  # (K * 24, 3)
    offsets = np.repeat(np.arange(n_people) * 24, n_prims)
    a3, b3 = pts[np.tile(_PRIM_A, n_people) + offsets], pts[np.tile(_PRIM_B, n_people) + offsets]
    za, zb = a3[:, 2], b3[:, 2]
    ok = (za - ra_m > _NEAR_M) & (zb - rb_m > _NEAR_M)
    # Projected endpoints and radii (pixels), vectorised over primitives.
    with np.errstate(divide="ignore", invalid="ignore"):
        au = intr.fx * a3[:, 0] / za + intr.cx
        av = intr.fy * a3[:, 1] / za + intr.cy
        bu = intr.fx * b3[:, 0] / zb + intr.cx
        bv = intr.fy * b3[:, 1] / zb + intr.cy
        rap = intr.fx * ra_m / za
        rbp = intr.fx * rb_m / zb
        x0 = np.floor(np.minimum(au - rap, bu - rbp)).clip(0, width)
        x1 = np.ceil(np.maximum(au + rap, bu + rbp) + 1).clip(0, width)
        y0 = np.floor(np.minimum(av - rap, bv - rbp)).clip(0, height)
        y1 = np.ceil(np.maximum(av + rap, bv + rbp) + 1).clip(0, height)
    ok &= np.isfinite(au + av + bu + bv + rap + rbp) & (x1 > x0) & (y1 > y0)
    ids = np.full(height * width, NO_HIT, dtype=np.uint8)
    shade = np.zeros(height * width, dtype=np.float32)
    prims = np.flatnonzero(ok)
    if prims.size:
        ex, ey = bu - au, bv - av
        l2 = ex * ex + ey * ey
        inv_l2 = np.where(l2 > 1e-6, 1.0 / np.maximum(l2, 1e-6), 0.0)  # spheres: s = 0
        params = np.stack([
            x0 - au, y0 - av, ex * inv_l2, ey * inv_l2, ex, ey, rap, rbp - rap, za, zb - za,
            -0.5 * (ra_m + rb_m),
        ], 1).astype(np.float32)  # (P, 11)
        wx, wy = (x1 - x0).astype(int), (y1 - y0).astype(int)
        area = wx * wy
        # Two size classes keep the padding small: big (torso, thighs) and the rest.
        big = area[prims] > 0.3 * area[prims].max()
        light = np.asarray(apps[0].light_dir, dtype=np.float32) * np.float32(apps[0].diffuse)  # diffuse in L
        frags = [
            _prim_fragments(group, params, x0.astype(int), y0.astype(int), wx, wy, width, height, light)
            for group in (prims[big], prims[~big]) if group.size
        ]
        pix, z, s, lambert, prim = (np.concatenate(f) for f in zip(*frags, strict=True))
        # Z-buffer: per pixel minimum depth over all fragments, then keep the fragments at that depth.
        zbuf = np.full(height * width, np.inf, dtype=np.float32)
        np.minimum.at(zbuf, pix, z)
        win = z == zbuf[pix]
        pix, s, prim = pix[win], s[win], prim[win]
        shade[pix] = lambert[win] + np.float32(apps[0].ambient)
        person, local = np.divmod(prim, n_prims)
        mat = np.where(s < _PRIM_BELT[local], PANTS, _PRIM_MAT[local])  # torso: trousers below the belt
        seg_len = np.linalg.norm(b3 - a3, axis=1)[prim]
        stripes = np.stack([a.stripes for a in apps])  # (K, NUM_MATERIALS)
        striped = stripes[person, mat] & (seg_len > 0)  # stripes across the axis (not on spheres)
        if striped.any():
            period = np.array([a.stripe_period_m for a in apps])[person]
            phase = (s * (seg_len / period)) % 1.0
            mat = np.where(striped & (phase >= 0.5), mat + STRIPE_OFFSET, mat)
        ids[pix] = person * PALETTE_ROWS + mat
    return ids.reshape(height, width), shade.reshape(height, width)


def composite(image: np.ndarray, ids: np.ndarray, shade: np.ndarray, palette: np.ndarray) -> None:
    """In place: pixels with ``ids != NO_HIT`` get ``palette[ids] * shade`` (saturated uint8)."""
    import cv2

    lut = np.zeros((1, 256, 3), np.float32)
    lut[0, : len(palette)] = palette
    body = cv2.multiply(cv2.LUT(cv2.merge([ids, ids, ids]), lut), cv2.merge([shade, shade, shade]), dtype=cv2.CV_8U)
    cv2.copyTo(body, (ids != NO_HIT).view(np.uint8), image)


def render_people(
    renderer: PersonRenderer,
    joints_cam: np.ndarray,
    toes_cam: np.ndarray | None,
    intrinsics: Intrinsics,
    width: int,
    height: int,
    rng: np.random.Generator,
    appearances: Sequence[Appearance] | None = None,
    scene_seed: int = 0,
) -> np.ndarray:
    """A full camera image (height, width, 3) uint8 RGB with several people, for demos and pipeline tests.

    ``joints_cam`` (K, 17, 3) and ``toes_cam`` (K, 2, 3) or None, camera frame metres. Person k's look and
    the background come from ``scene_seed`` (the same in every frame of a sequence) unless
    ``appearances`` is given; ``rng`` only drives the per-frame sensor noise.
    """

    joints = np.asarray(joints_cam, dtype=np.float64).reshape(-1, 17, 3)
    k = joints.shape[0]
    if appearances is None:
        appearances = [sample_appearance(np.random.default_rng([scene_seed, i]), renderer.config) for i in range(k)]
    image = scene_background(renderer, scene_seed, height, width)
    if k:
        toes = [None] * k if toes_cam is None else list(np.asarray(toes_cam).reshape(-1, 2, 3))
        pts = [body_points(joints[i], toes[i]) for i in range(k)]
        ids, shade = rasterize_people(pts, list(appearances), intrinsics, height, width)
        composite(image, ids, shade, np.concatenate([a.palette for a in appearances]))
    return add_sensor_noise(renderer, image, rng)


def scene_background(renderer: PersonRenderer, scene_seed: int, height: int, width: int) -> np.ndarray:
    """The fixed (height, width, 3) uint8 background of a demo/pipeline scene (same for every frame)."""
    scene_rng = np.random.default_rng([scene_seed, 1_000_003])
    return renderer.bank.sample(scene_rng, height, width, ("texture", "clutter", "noise")[int(scene_rng.integers(3))])


def add_sensor_noise(renderer: PersonRenderer, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-frame sensor noise of a strength drawn from ``rng`` (the bank tiled over full frames)."""
    import cv2

    height, width = image.shape[:2]
    noise = renderer._noise[int(rng.integers(len(renderer._noise)))]
    reps = (-(-height // noise.shape[0]), -(-width // noise.shape[1]), 1)
    return cv2.add(image, np.tile(noise, reps)[:height, :width], dtype=cv2.CV_8U)


def _prim_fragments(
    prims: np.ndarray, params: np.ndarray, x0: np.ndarray, y0: np.ndarray, wx: np.ndarray, wy: np.ndarray,
    width: int, height: int, light: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Covered pixels of a group of primitives, evaluated on windows padded to the group's largest.

    Returns flat arrays over fragments: pixel index, depth z, axis parameter s, the Lambert term
    ``max(0, n . light)`` with the unit normal ``n = (dx, dy, -sqrt(1 - q))`` in the camera frame, and the
    primitive index.
    """
    hw, ww = int(wy[prims].max()), int(wx[prims].max())
    # Window origins, moved left/up where the padded window would leave the image (it still covers the
    # primitive's own box, which lies inside the image): no pixel needs an in-image test later.
    gx0 = np.minimum(x0[prims], width - ww)
    gy0 = np.minimum(y0[prims], height - hw)
    p = params[prims]  # (P, 11)
    c = [p[:, i, None, None] for i in range(p.shape[1])]  # each (P, 1, 1)
    ox, oy, kx, ky, ex, ey, r0, dr = c[:8]
    ox = ox + (gx0 - x0[prims]).astype(np.float32)[:, None, None]
    oy = oy + (gy0 - y0[prims]).astype(np.float32)[:, None, None]
    cols = np.arange(ww, dtype=np.float32)
    rows = np.arange(hw, dtype=np.float32)[:, None]
    xs = ox + cols  # (P, 1, ww) pixel offsets from the projected start point
    ys = oy + rows  # (P, hw, 1)
    s = xs * kx + ys * ky  # (P, hw, ww) axis parameter of the closest point
    np.maximum(s, 0.0, out=s)
    np.minimum(s, 1.0, out=s)
    inv_r = r0 + s * dr  # projected radius at s (tapered capsules) ...
    np.reciprocal(inv_r, out=inv_r)  # ... inverted
    dx = xs - s * ex
    dx *= inv_r  # offsets from the axis in units of the local radius
    dy = ys - s * ey
    dy *= inv_r
    hgt = 1.0 - dx * dx - dy * dy
    idx = np.flatnonzero(hgt > 0.0)  # inside the silhouette (q < 1)
    hgt = np.sqrt(hgt.ravel()[idx])
    s = s.ravel()[idx]
    prim_of, rem = np.divmod(idx, hw * ww)
    row, col = np.divmod(rem, ww)
    pix = (gy0[prim_of] + row) * width + gx0[prim_of] + col
    pp = p[prim_of]  # (F, 11) per-fragment parameters
    z = pp[:, 8] + s * pp[:, 9] + hgt * pp[:, 10]  # front surface depth: axis depth minus the bulge
    lambert = dx.ravel()[idx] * light[0] + dy.ravel()[idx] * light[1] - hgt * light[2]
    np.maximum(lambert, 0.0, out=lambert)
    return pix, z, s, lambert, prims[prim_of]


def working_grid(
    intrinsics: Intrinsics, height: int, width: int, resolution_scale: float
) -> tuple[int, int, Intrinsics]:
    """The grid a crop is rendered on: the same field of view at ``resolution_scale`` (clamped to
    [0.2, 1]) of (height, width) -> (h_r, w_r, intrinsics on that grid); pixel centres map as
    ``(i + 0.5) * w_r / width - 0.5``. Rendering small people coarsely and upsampling is what the
    deployment warp does to a person smaller in the camera image than the crop."""
    scale = min(1.0, max(float(resolution_scale), 0.2))
    h_r, w_r = max(8, round(height * scale)), max(6, round(width * scale))
    if h_r >= height or w_r >= width:
        return height, width, intrinsics
    sx, sy = w_r / width, h_r / height
    return h_r, w_r, Intrinsics(intrinsics.fx * sx, intrinsics.fy * sy,
                                (intrinsics.cx + 0.5) * sx - 0.5, (intrinsics.cy + 0.5) * sy - 0.5)


def crop_valid_region(
    box_affine: np.ndarray, image_width: int, image_height: int
) -> tuple[float, float, float, float]:
    """The full image's extent ([-0.5, W-0.5] x [-0.5, H-0.5]) mapped into crop pixel coordinates."""
    sx, tx, sy, ty = box_affine[0, 0], box_affine[0, 2], box_affine[1, 1], box_affine[1, 2]
    return (-0.5 * sx + tx, -0.5 * sy + ty, (image_width - 0.5) * sx + tx, (image_height - 0.5) * sy + ty)


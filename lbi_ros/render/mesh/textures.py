"""Procedural cloth, skin and hair textures for the mesh renderer (:mod:`lbi_ros.render.mesh.mesh_raster`).

Every texture is an (S, S, 3) uint8 RGB image in UV space (row 0 = v = 0) and **tiles seamlessly**: each
pattern is a function of ``x * k / S`` with integer ``k`` (periodic on the square), because the
rasterizer samples with repeat wrapping and garment UVs wrap around limbs. Kinds (:data:`CLOTH_KINDS`):

* ``plain``: one colour with a faint weave; ``stripes``: two or three colours, random integer wave
  vector (so random angle and period), hard or soft edges; ``checks``: two-colour squares (gingham-like
  mixing where bands cross); ``plaid``: tartan, several bands per axis averaged;
  ``noise``: smooth multi-octave colour noise (prints, camouflage, mottled fabric);
  ``denim``: indigo (or black/grey) twill diagonal with fading; ``knit``: rib columns of chevrons;
  ``dots``: polka dots.

Cloth colours come from :func:`sample_cloth_colour`: about a third neutrals (black to white, slightly
tinted), the rest HSV with moderate saturation, as worn clothing is. Skin tones
(:func:`sample_skin_tone`) are drawn uniformly along the 10 swatches of the Monk Skin Tone scale (Google,
2022; lightest ``#f6ede4`` to darkest ``#292420``), linearly interpolated, with a small per-channel
jitter for redder or yellower undertones, so light and dark skin are equally likely. Hair colours are
black, browns, blonde, auburn, grey and white, weighted by rough prevalence.

Everything random comes from the ``np.random.Generator`` passed in (deterministic for a seed; nothing is
cached between calls). Each texture costs well under 0.3 ms at 64 x 64.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

ClothKind = Literal["plain", "stripes", "checks", "plaid", "noise", "denim", "knit", "dots"]
CLOTH_KINDS: tuple[str, ...] = get_args(ClothKind)
# Mix used by sample_cloth_texture (same order as CLOTH_KINDS).
CLOTH_WEIGHTS = np.array([0.26, 0.16, 0.08, 0.07, 0.10, 0.15, 0.10, 0.08])

# Monk Skin Tone scale, swatches 1 (lightest) .. 10 (darkest), sRGB.
MONK_SKIN_TONES = np.array(
    [
        [246, 237, 228], [243, 231, 219], [247, 234, 208], [234, 218, 186], [215, 189, 150],
        [160, 126, 86], [130, 92, 67], [96, 65, 52], [58, 49, 42], [41, 36, 32],
    ],
    dtype=np.float32,
)  # fmt: skip

_HAIR_COLOURS = np.array(
    [[20, 17, 15], [45, 30, 22], [80, 55, 35], [125, 90, 60], [200, 165, 110], [140, 65, 35],
     [150, 145, 140], [225, 220, 210]],
    dtype=np.float32,
)  # fmt: skip
_HAIR_WEIGHTS = np.array([0.34, 0.26, 0.15, 0.08, 0.07, 0.04, 0.04, 0.02])


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] -> RGB float (3,) in [0, 255]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (255.0 * (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))).astype(np.float32)


def sample_cloth_colour(rng: np.random.Generator) -> np.ndarray:
    """A plausible garment colour, float (3,) RGB in [0, 255]."""
    u = rng.random(4)
    if u[0] < 0.35:  # neutrals: black, greys, white, with a slight warm or cool tint
        grey = 15.0 + 230.0 * u[1] ** 1.3
        return np.clip(grey * (1.0 + 0.08 * (rng.random(3) - 0.5)), 0.0, 255.0).astype(np.float32)
    return _hsv_to_rgb(u[1], 0.15 + 0.75 * u[2], 0.15 + 0.8 * u[3])


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column (1, S) and row (S, 1) coordinates in [0, 1) (periodic with period 1)."""
    t = np.arange(size, dtype=np.float32) / size
    return t[None, :], t[:, None]


def _periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth tileable noise (S, S) in [0, 1]: a random ``cells`` x ``cells`` grid, bilinear with wrap."""
    grid = rng.random((cells, cells)).astype(np.float32)
    t = np.arange(size, dtype=np.float32) * (cells / size)
    i0 = t.astype(np.int64)
    f = t - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: no visible grid creases
    i1 = (i0 + 1) % cells
    rows = grid[i0] * (1.0 - f)[:, None] + grid[i1] * f[:, None]  # (S, cells)
    return rows[:, i0] * (1.0 - f)[None, :] + rows[:, i1] * f[None, :]


def _weave(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """Fine thread texture: per-pixel noise plus a 1-pixel warp/weft grid, a gain map (S, S) around 1."""
    x, y = _coords(size)
    grid = 0.5 * (np.cos(np.pi * size * x) + np.cos(np.pi * size * y))  # +-1 alternating pixels
    return 1.0 + strength * (0.5 * grid + (rng.random((size, size), dtype=np.float32) - 0.5))


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = sample_cloth_colour(rng)
    b = sample_cloth_colour(rng)
    if np.abs(a - b).sum() < 90:  # keep patterns visible: push b away from a
        b = 255.0 - a if rng.random() < 0.5 else a * 0.45
    return a, b


def make_texture(rng: np.random.Generator, kind: ClothKind, size: int = 64) -> np.ndarray:
    """A tileable procedural cloth texture (size, size, 3) uint8 RGB of the given ``kind``."""
    if kind not in CLOTH_KINDS:
        raise ValueError(f"kind must be one of {CLOTH_KINDS}, got {kind!r}")
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    x, y = _coords(size)
    weave = 0.06
    if kind == "plain":
        img = np.broadcast_to(sample_cloth_colour(rng), (size, size, 3))
        weave = 0.05 + 0.08 * rng.random()
    elif kind == "stripes":
        a, b = _two_colours(rng)
        kx, ky = (int(v) for v in rng.integers(-3, 4, 2))
        if kx == 0 and ky == 0:
            ky = 1
        reps = int(rng.integers(1, 5))  # stripe count along the wave vector, per tile
        phase = (reps * (kx * x + ky * y) + rng.random()) % 1.0
        duty = 0.2 + 0.6 * rng.random()
        edge = 0.01 + 0.08 * rng.random()  # soft edges in phase units
        m = np.clip((duty - phase) / edge, 0, 1) * np.clip(phase / edge, 0, 1)
        img = b + (a - b) * m[..., None]
        if rng.random() < 0.3:  # thin third-colour pinstripe
            pin = np.abs(phase - (duty + 1.0) / 2.0) < 0.03
            img = np.where(pin[..., None], sample_cloth_colour(rng), img)
    elif kind in ("checks", "plaid"):
        n = int(rng.integers(2, 9))
        if kind == "checks":
            a, b = _two_colours(rng)
            mx = ((n * x) % 1.0 < 0.5).astype(np.float32)
            my = ((n * y) % 1.0 < 0.5).astype(np.float32)
            w = (mx[..., None] + my[..., None]) * np.float32(0.5)  # 0, 0.5 (mixed, gingham), 1
            img = b + (a - b) * w
        else:
            # Tartan: one band sequence (S, 3) used for warp and weft; a crossing shows their mean.
            bands = np.broadcast_to(sample_cloth_colour(rng), (size, 3)).copy()
            t = x[0]
            for _ in range(int(rng.integers(2, 4))):
                col, width, off = sample_cloth_colour(rng), 0.08 + 0.25 * rng.random(), rng.random()
                inside = ((n * t + off) % 1.0) < width
                bands[inside] = 0.5 * (bands[inside] + col)
            img = 0.5 * (bands[None, :, :] + bands[:, None, :])
    elif kind == "noise":
        a, b = _two_colours(rng)
        cells = int(rng.choice([4, 8, 16]))
        n = 0.65 * _periodic_noise(rng, size, cells) + 0.35 * _periodic_noise(rng, size, min(2 * cells, size))
        if rng.random() < 0.4:  # posterised blotches (camouflage-like prints)
            n = (n > 0.5).astype(np.float32)
        img = b + (a - b) * n[..., None]
    elif kind == "denim":
        u = rng.random(3)
        indigo = np.array([35, 55, 105], np.float32) * (0.6 + 0.8 * u[0])
        base = indigo if u[1] < 0.8 else np.full(3, 25 + 90 * u[2], np.float32)
        twill = 0.5 + 0.5 * np.cos(2 * np.pi * (size // 3) * (x + y))  # 45 degree diagonal, ~3 px period
        fade = _periodic_noise(rng, size, 4)
        img = base * (0.8 + 0.25 * twill)[..., None] * (0.85 + 0.4 * fade)[..., None] + 25.0 * fade[..., None]
        weave = 0.12
    elif kind == "knit":
        base = sample_cloth_colour(rng)
        cols = int(size // int(rng.integers(3, 6)))  # rib columns per tile
        rows = int(size // int(rng.integers(3, 6)))
        cx = (cols * x) % 1.0
        chevron = (rows * y + 0.5 * np.abs(cx - 0.5)) % 1.0
        img = base * (0.75 + 0.35 * np.sin(np.pi * chevron) * np.sin(np.pi * cx))[..., None]
        weave = 0.05
    else:  # dots
        a, b = _two_colours(rng)
        n = int(rng.integers(3, 10))
        dx, dy = (n * x) % 1.0 - 0.5, (n * y) % 1.0 - 0.5
        r = 0.12 + 0.25 * rng.random()
        m = np.clip((r - np.sqrt(dx * dx + dy * dy)) * 12.0 + 0.5, 0.0, 1.0)[..., None]
        img = b + (a - b) * m
    img = img * _weave(rng, size, weave)[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def sample_cloth_texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A cloth texture of a random kind (mix :data:`CLOTH_WEIGHTS`), (size, size, 3) uint8."""
    kind = CLOTH_KINDS[int(rng.choice(len(CLOTH_KINDS), p=CLOTH_WEIGHTS / CLOTH_WEIGHTS.sum()))]
    return make_texture(rng, kind, size)


def sample_skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A skin albedo (3,) uint8 RGB, uniform along the Monk scale (light to dark), jittered undertone."""
    u = rng.random(3)
    pos = u[0] * (len(MONK_SKIN_TONES) - 1)
    i = min(int(pos), len(MONK_SKIN_TONES) - 2)
    f = pos - i
    tone = MONK_SKIN_TONES[i] * (1.0 - f) + MONK_SKIN_TONES[i + 1] * f
    undertone = np.array([1.0 + 0.05 * (u[1] - 0.5), 1.0, 1.0 - 0.08 * (u[1] - 0.5)])  # redder/yellower
    return np.clip(tone * undertone * (0.94 + 0.1 * u[2]) + 0.5, 0, 255).astype(np.uint8)


def skin_texture(rng: np.random.Generator, tone: np.ndarray, size: int = 64) -> np.ndarray:
    """Skin texture (size, size, 3) uint8 around ``tone``: faint blotches (+-4 %) and pores (+-2 %)."""
    tone = np.asarray(tone, np.float32).reshape(3)
    blotch = _periodic_noise(rng, size, 8) - 0.5
    pores = rng.random((size, size), dtype=np.float32) - 0.5
    gain = 1.0 + 0.08 * blotch + 0.04 * pores
    redness = np.array([1.0, 0.97, 0.97], np.float32)  # blotches are slightly redder
    img = tone * gain[..., None] * (1.0 + (redness - 1.0) * blotch[..., None])
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def sample_hair_colour(rng: np.random.Generator) -> np.ndarray:
    """A hair colour (3,) uint8 RGB (black, browns, blonde, auburn, grey, white), brightness-jittered."""
    i = int(rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS / _HAIR_WEIGHTS.sum()))
    return np.clip(_HAIR_COLOURS[i] * (0.85 + 0.3 * rng.random()) + 0.5, 0, 255).astype(np.uint8)


def hair_texture(rng: np.random.Generator, colour: np.ndarray, size: int = 64) -> np.ndarray:
    """Hair texture (size, size, 3) uint8: strands along v (per-column values smoothed along u)."""
    colour = np.asarray(colour, np.float32).reshape(3)
    strands = rng.random(size, dtype=np.float32)
    strands = (strands + np.roll(strands, 1) + np.roll(strands, -1)) / 3.0  # (S,) per column
    flow = _periodic_noise(rng, size, 4)
    gain = 0.75 + 0.35 * strands[None, :] + 0.2 * (flow - 0.5)
    return np.clip(colour * gain[..., None] + 6.0 * gain[..., None] + 0.5, 0, 255).astype(np.uint8)

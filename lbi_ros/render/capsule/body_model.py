"""The rendered person: body primitives on the H36M skeleton, materials, appearance sampling, render settings.

Split out of :mod:`lbi_ros.render.capsule.renderer` (which rasterises and composites these): what a person is made
of and how it looks, independent of how it is drawn. See that module's docstring for the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lbi_ros.render.colours import random_colours

# Material ids (palette rows); striped variants use id + STRIPE_OFFSET.
SKIN, HAIR, SHIRT, SLEEVE, PANTS, SHIN, SHOES = range(7)
NUM_MATERIALS = 7
STRIPE_OFFSET = 8
NO_HIT = 255
PALETTE_ROWS = 2 * STRIPE_OFFSET  # palette rows per person

# Extra points appended to the 17 H36M joints before building primitives:
# 17 l_toe, 18 r_toe, 19 head centre, 20 hair centre, 21 neck top, 22 l_hand end, 23 r_hand end.
_L_TOE, _R_TOE, _HEAD_C, _HAIR_C, _NECK_TOP, _L_HAND, _R_HAND = range(17, 24)

# (point a, point b, radius a [m], radius b [m], material)
BODY_PRIMITIVES: tuple[tuple[int, int, float, float, int], ...] = (
    (_HEAD_C, _HEAD_C, 0.095, 0.095, SKIN),
    (_HAIR_C, _HAIR_C, 0.093, 0.093, HAIR),
    (8, _NECK_TOP, 0.05, 0.045, SKIN),
    (0, 8, 0.11, 0.115, SHIRT),  # torso core (pants below the belt line, see _PRIM_BELT)
    (4, 11, 0.085, 0.08, SHIRT),  # left torso half
    (1, 14, 0.085, 0.08, SHIRT),  # right torso half
    (11, 12, 0.05, 0.042, SHIRT),
    (14, 15, 0.05, 0.042, SHIRT),
    (12, 13, 0.04, 0.032, SLEEVE),
    (15, 16, 0.04, 0.032, SLEEVE),
    (13, _L_HAND, 0.034, 0.028, SKIN),
    (16, _R_HAND, 0.034, 0.028, SKIN),
    (4, 5, 0.085, 0.056, PANTS),
    (1, 2, 0.085, 0.056, PANTS),
    (5, 6, 0.052, 0.038, SHIN),
    (2, 3, 0.052, 0.038, SHIN),
    (6, _L_TOE, 0.043, 0.035, SHOES),
    (3, _R_TOE, 0.043, 0.035, SHOES),
)
_PRIM_A = np.array([p[0] for p in BODY_PRIMITIVES])
_PRIM_B = np.array([p[1] for p in BODY_PRIMITIVES])
_PRIM_RA = np.array([p[2] for p in BODY_PRIMITIVES])
_PRIM_RB = np.array([p[3] for p in BODY_PRIMITIVES])
_PRIM_MAT = np.array([p[4] for p in BODY_PRIMITIVES])
# Torso primitives switch to the PANTS material below this fraction of their axis (from the hip end).
_PRIM_BELT = np.array([0.22 if i in (3, 4, 5) else 0.0 for i in range(len(BODY_PRIMITIVES))])
_NEAR_M = 0.05  # primitives closer to the camera than this are skipped
_IS_TORSO = np.isin(np.arange(len(BODY_PRIMITIVES)), [3, 4, 5])


@dataclass(frozen=True)
class RenderConfig:
    bank_seed: int = 1234
    bank_size: int = 24  # images per background kind
    bank_resolution: int = 256
    background_probs: tuple[float, float, float, float] = (0.15, 0.25, 0.3, 0.3)  # plain, noise, texture, clutter
    occluder_prob: float = 0.08
    blur_prob: float = 0.25
    sensor_noise_max: float = 6.0  # uint8 levels (std)
    ambient: tuple[float, float] = (0.25, 0.6)
    diffuse: tuple[float, float] = (0.45, 0.9)
    girth_scale: tuple[float, float] = (0.85, 1.3)
    stripe_prob: float = 0.2

    def __post_init__(self) -> None:
        if len(self.background_probs) != 4 or min(self.background_probs) < 0 or sum(self.background_probs) <= 0:
            raise ValueError(f"background_probs must be 4 non-negative weights, got {self.background_probs}")
        if self.bank_size < 1 or self.bank_resolution < 64:
            raise ValueError("bank_size >= 1 and bank_resolution >= 64 required")


@dataclass(frozen=True)
class Appearance:
    """Per-person look: palette (PALETTE_ROWS, 3) float32 RGB 0..255, light and body shape."""

    palette: np.ndarray
    light_dir: np.ndarray  # (3,) unit vector towards the light, camera frame
    ambient: float
    diffuse: float
    girth: float
    stripes: np.ndarray  # (NUM_MATERIALS,) bool
    stripe_period_m: float


_HAIR_COLOURS = np.array(
    [[20.0, 16, 12], [70, 45, 25], [140, 100, 55], [200, 170, 110], [150, 150, 150]], dtype=np.float64
)
_SKIN_LIGHT, _SKIN_DARK = np.array([245.0, 212.0, 185.0]), np.array([85.0, 55.0, 40.0])


def sample_appearance(rng: np.random.Generator, config: RenderConfig = RenderConfig()) -> Appearance:
    """Random clothing colours, skin tone, hair, stripes, light and girth."""
    u = rng.random(12)
    cols = random_colours(rng, 4 + NUM_MATERIALS)
    pal = np.zeros((PALETTE_ROWS, 3))
    pal[SKIN] = (_SKIN_LIGHT * (1 - u[0]) + _SKIN_DARK * u[0]) * (0.92 + 0.13 * u[1])
    pal[HAIR] = _HAIR_COLOURS[int(u[2] * 5)] * (0.85 + 0.3 * u[3])
    pal[SHIRT] = cols[0]
    pal[SLEEVE] = pal[SHIRT] if u[4] < 0.6 else pal[SKIN]  # long or short sleeves
    pal[PANTS] = cols[1] * (0.6 if u[5] < 0.5 else 1.0)
    pal[SHIN] = pal[PANTS] if u[6] < 0.75 else pal[SKIN]  # trousers or shorts
    pal[SHOES] = cols[2] * (0.3 + 0.7 * u[7])
    pal[STRIPE_OFFSET : STRIPE_OFFSET + NUM_MATERIALS] = cols[4:]
    stripes = rng.random(NUM_MATERIALS) < config.stripe_prob
    stripes[[SKIN, HAIR]] = False
    # Light from the camera's hemisphere (z < 0 points back towards the camera), mostly from above.
    d = np.array([2 * u[8] - 1, -1.0 + 1.3 * u[9], -(0.2 + 0.8 * u[10])])
    lo, hi = config.ambient
    dlo, dhi = config.diffuse
    glo, ghi = config.girth_scale
    extra = rng.random(3)
    return Appearance(
        palette=np.clip(pal, 0, 255).astype(np.float32),
        light_dir=(d / np.linalg.norm(d)).astype(np.float32),
        ambient=float(lo + (hi - lo) * u[11]),
        diffuse=float(dlo + (dhi - dlo) * extra[0]),
        girth=float(glo + (ghi - glo) * extra[1]),
        stripes=stripes,
        stripe_period_m=float(0.04 + 0.08 * extra[2]),
    )


def body_points(joints_cam: np.ndarray, toes_cam: np.ndarray | None) -> np.ndarray:
    """H36M-17 joints (17, 3) + toes (2, 3) -> the 24 points the primitives use (camera frame)."""
    j = np.asarray(joints_cam, dtype=np.float64)
    pts = np.empty((24, 3))
    pts[:17] = j
    if toes_cam is None:  # procedural poses without toes: a foot pointing forward-down from the ankle
        lat, up_ = j[4] - j[1], j[8] - j[0]
        fwd = np.array([lat[1] * up_[2] - lat[2] * up_[1], lat[2] * up_[0] - lat[0] * up_[2],
                        lat[0] * up_[1] - lat[1] * up_[0]])
        fwd /= max(np.linalg.norm(fwd), 1e-9)
        down = j[0] - j[8]
        down /= max(np.linalg.norm(down), 1e-9)
        toes_cam = np.stack([j[6] + 0.12 * fwd + 0.06 * down, j[3] + 0.12 * fwd + 0.06 * down])
    pts[17:19] = toes_cam
    up = j[10] - j[8]
    up /= max(np.linalg.norm(up), 1e-9)
    face = j[9] - j[8]
    face = face - up * (face @ up)
    face /= max(np.linalg.norm(face), 1e-9)
    centre = 0.5 * (j[9] + j[10]) - 0.02 * face
    pts[_HEAD_C] = centre
    pts[_HAIR_C] = centre + 0.022 * up - 0.03 * face
    pts[_NECK_TOP] = j[8] + 0.6 * (centre - j[8])
    for wrist, elbow, out in ((13, 12, _L_HAND), (16, 15, _R_HAND)):
        d = j[wrist] - j[elbow]
        pts[out] = j[wrist] + 0.08 * d / max(np.linalg.norm(d), 1e-9)
    return pts


# ---------------------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------------------

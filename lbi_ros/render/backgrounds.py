"""Procedural backgrounds for rendered training crops: plain gradients, smooth noise, textures, clutter.

A bank of images per kind is generated once from a seed (about 0.3 s); each sample then takes a
random window of a random bank image and varies it by flip, channel order and gain, so backgrounds
are cheap per sample yet rarely repeat. Split out of :mod:`lbi_ros.render.capsule.renderer`, which composites
people onto these.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lbi_ros.render.colours import random_colours

if TYPE_CHECKING:
    from lbi_ros.render.capsule.body_model import RenderConfig

BACKGROUND_KINDS = ("plain", "noise", "texture", "clutter")
_PERMUTATIONS = [np.eye(3)[list(p)] for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))]


class BackgroundBank:
    """Procedural background images (uint8 RGB), generated once from a seed."""

    def __init__(self, config: RenderConfig) -> None:
        import cv2

        rng = np.random.default_rng(config.bank_seed)
        n, r = config.bank_size, config.bank_resolution
        self.resolution = r
        yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) / r
        self.images: dict[str, list[np.ndarray]] = {"noise": [], "texture": [], "clutter": []}
        for _ in range(n):
            # Smooth multi-octave noise mapped between two colours.
            acc = np.zeros((r, r), np.float32)
            for octave, amp in ((4, 1.0), (16, 0.5), (64, 0.25)):
                small = rng.random((octave, octave)).astype(np.float32)
                acc += amp * cv2.resize(small, (r, r), interpolation=cv2.INTER_CUBIC)
            acc = (acc - acc.min()) / max(float(np.ptp(acc)), 1e-6)
            c0, c1 = random_colours(rng, 2)
            self.images["noise"].append(self._to_u8(c0 + acc[..., None] * (c1 - c0)))

            # Regular textures.
            kind = int(rng.integers(4))
            ang = rng.uniform(0, math.pi)
            f = rng.uniform(4, 30)
            u = np.cos(ang) * xx + np.sin(ang) * yy
            v = -np.sin(ang) * xx + np.cos(ang) * yy
            if kind == 0:
                pat = 0.5 + 0.5 * np.sin(2 * math.pi * f * u)
            elif kind == 1:
                pat = ((np.floor(f * u) + np.floor(f * v)) % 2).astype(np.float32)
            elif kind == 2:  # bricks
                row = np.floor(f * v)
                pat = ((np.abs(((f * u + 0.5 * (row % 2)) % 1) - 0.5) > 0.45) | (((f * v) % 1) > 0.9))
                pat = 1.0 - pat.astype(np.float32)
            else:  # rings (wood-like)
                cx, cy = rng.random(2)
                pat = 0.5 + 0.5 * np.sin(2 * math.pi * f * np.hypot(xx - cx, yy - cy) + 3 * acc)
            c0, c1 = random_colours(rng, 2)
            img = c0 + pat[..., None].astype(np.float32) * (c1 - c0)
            img *= (0.8 + 0.4 * acc)[..., None]
            self.images["texture"].append(self._to_u8(img))

            # Clutter: a gradient base with random shapes.
            base = c0 * (0.6 + 0.6 * yy[..., None]) if rng.random() < 0.5 else self.images["noise"][-1].astype(np.float32)
            canvas = np.ascontiguousarray(np.clip(base, 0, 255).astype(np.uint8))
            for _ in range(int(rng.integers(8, 40))):
                col = tuple(int(c) for c in random_colours(rng, 1)[0])
                shape = int(rng.integers(4))
                p = rng.integers(0, r, 2)
                if shape == 0:
                    q = p + rng.integers(5, r // 2, 2)
                    cv2.rectangle(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, -1)
                elif shape == 1:
                    cv2.circle(canvas, (int(p[0]), int(p[1])), int(rng.integers(3, r // 5)), col, -1)
                elif shape == 2:
                    q = rng.integers(0, r, 2)
                    cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, int(rng.integers(1, 8)))
                else:
                    pts = (p + rng.integers(-r // 6, r // 6, (int(rng.integers(3, 7)), 2))).astype(np.int32)
                    cv2.fillPoly(canvas, [pts], col)
            if rng.random() < 0.5:
                canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.8, 3.0))
            self.images["clutter"].append(canvas)

    @staticmethod
    def _to_u8(img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))

    def sample(self, rng: np.random.Generator, height: int, width: int, kind: str) -> np.ndarray:
        """A (height, width, 3) uint8 background of the given kind (``plain`` is made on the fly)."""
        import cv2

        u = rng.random(6)
        if kind == "plain":
            c0, c1 = random_colours(rng, 2)
            t = np.linspace(0.0, 0.6 * u[0], height, dtype=np.float32)[:, None, None]
            col = np.clip(c0 + t * (c1 - c0), 0, 255).astype(np.uint8)  # (height, 1, 3)
            return np.ascontiguousarray(np.broadcast_to(col, (height, width, 3)))
        bank = self.images[kind]
        img = bank[int(u[0] * len(bank))]
        r = self.resolution
        step = 2 if (u[1] < 0.3 and 2 * height <= r and 2 * width <= r) else 1
        if height * step > r or width * step > r:
            out = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
        else:
            y0 = int(u[2] * (r - height * step + 1))
            x0 = int(u[3] * (r - width * step + 1))
            out = img[y0 : y0 + height * step, x0 : x0 + width * step]
            if step == 2:  # zoomed out: area-average 2x2 blocks
                out = cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)
        # (cv2 makes the window contiguous far faster than numpy does for strided uint8 copies)
        out = cv2.flip(out, 1) if u[4] < 0.5 else np.ascontiguousarray(out)
        # Random channel permutation and gain in one saturating 3x3 colour transform.
        mix = _PERMUTATIONS[int(u[5] * 6)] * rng.uniform(0.6, 1.25)
        return cv2.transform(out, mix)

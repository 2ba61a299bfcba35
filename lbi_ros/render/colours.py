"""Random surface colours shared by backgrounds and bodies (below both, so neither imports the other)."""

from __future__ import annotations

import numpy as np


def random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) RGB 0..255 colours: uniform hue, saturation biased low, value 0.12..0.98 (HSV -> RGB)."""
    h = rng.random(n) * 6.0
    sat = rng.uniform(0.0, 0.9, n) ** 1.3
    val = rng.uniform(0.12, 0.98, n)
    # HSV -> RGB: channel k = v - v s max(0, min(t, 4 - t, 1)), t = (k_offset + h) mod 6
    t = (np.array([5.0, 3.0, 1.0]) + h[:, None]) % 6.0
    return (val[:, None] - val[:, None] * sat[:, None] * np.clip(np.minimum(t, 4.0 - t), 0.0, 1.0)) * 255.0

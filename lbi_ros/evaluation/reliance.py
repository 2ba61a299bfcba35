"""How much a lifter relies on its image: evaluate with the crops swapped between samples or greyed out.

Why (issue 18): a model that truly uses the image must get worse when a sample is shown *another* person's
crop. ``lbi eval ... --images shuffled|blank`` reports the MPJPE under

* ``shuffled``: sample i gets the crop of sample ``index[i] != i`` (a seeded derangement: no sample keeps
  its own crop), keypoints unchanged;
* ``blank``: every crop is a uniform mid-grey (RGB 128) image, normalised like a real crop.

The same rules, applied to cached backbone features, are in :func:`lbi_ros.training.cached_data.eval_batches`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from lbi_ros.evaluation.sets import EvalSet

ImageCondition = Literal["real", "shuffled", "blank"]
GREY = 128


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (a cyclic shift of a random order); n >= 2."""
    if n < 2:
        raise ValueError("shuffling images needs at least two samples")
    order = np.random.default_rng(seed).permutation(n)
    index = np.empty(n, dtype=np.int64)
    index[order] = np.roll(order, 1)
    return index


def with_images(eval_set: EvalSet, images: ImageCondition, seed: int = 0) -> EvalSet:
    """``eval_set`` with its ``image_crop`` (N, 3, H, W) replaced per ``images`` (targets, keypoints unchanged)."""
    if images == "real":
        return eval_set
    crops = eval_set.inputs["image_crop"]
    if images == "shuffled":
        new = crops[derangement(crops.shape[0], seed)]
    elif images == "blank":
        mean = np.asarray(eval_set.crop_mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(eval_set.crop_std, np.float32).reshape(1, 3, 1, 1)
        new = np.broadcast_to((GREY / 255.0 - mean) / std, crops.shape).astype(np.float32)
    else:
        raise ValueError(f"images must be real/shuffled/blank, got {images!r}")
    return replace(eval_set, inputs={**eval_set.inputs, "image_crop": np.ascontiguousarray(new)},
                   name=f"{eval_set.name} [images={images}]")

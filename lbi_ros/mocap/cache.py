"""The mocap cache format (written by :func:`lbi_ros.mocap.clips.prepare_mocap`) and its validated reader.

``<dir>/index.json`` (version, clip records with their split) + ``<dir>/mocap_h36m17.npz`` (``joints``
(N, 17, 3) and ``toes`` (N, 2, 3) float32, Z-up world metres, clips concatenated in index order). Kept
apart from the BVH conversion so training, evaluation and the demo read caches without the converter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lbi_ros.skeleton import NUM_JOINTS

SPLITS: tuple[str, ...] = ("train", "val", "test")
CACHE_VERSION = 1
CACHE_ARRAYS = "mocap_h36m17.npz"
CACHE_INDEX = "index.json"


class MocapError(ValueError):
    """Mocap files or a cache do not have the expected content."""


@dataclass(frozen=True)
class ClipRecord:
    name: str
    dataset: str
    content: str
    style: str
    take: int
    split: str
    start: int
    frames: int
    fps: float



@dataclass(frozen=True)
class MocapCache:
    """A loaded cache: ``joints`` (N, 17, 3) and ``toes`` (N, 2, 3) float32 world metres, clip records."""

    joints: np.ndarray
    toes: np.ndarray
    clips: tuple[ClipRecord, ...]

    def frame_indices(self, split: str) -> np.ndarray:
        """Global frame indices of one split (int64)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        parts = [np.arange(c.start, c.start + c.frames) for c in self.clips if c.split == split]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def frame_labels(self, indices: np.ndarray, key: Literal["content", "style", "name"] = "content") -> np.ndarray:
        starts = np.array([c.start for c in self.clips])
        clip_of = np.searchsorted(starts, indices, side="right") - 1
        values = np.array([getattr(c, key) for c in self.clips])
        return values[clip_of]


def load_mocap_cache(path: str | Path) -> MocapCache:
    """Load and validate a cache directory written by :func:`prepare_mocap`."""
    path = Path(path)
    index_path, arrays_path = path / CACHE_INDEX, path / CACHE_ARRAYS
    if not index_path.is_file() or not arrays_path.is_file():
        raise FileNotFoundError(f"{path} is not a mocap cache (needs {CACHE_INDEX} and {CACHE_ARRAYS}); "
                                f"run `lbi data prepare-mocap --src ... --out {path}`")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise MocapError(f"{index_path}: not valid JSON ({exc})") from exc
    if not isinstance(index, dict) or index.get("version") != CACHE_VERSION:
        raise MocapError(f"{index_path}: unsupported cache version {index.get('version') if isinstance(index, dict) else None}"
                         f" (expected {CACHE_VERSION}); re-run prepare-mocap")
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            joints, toes = data["joints"], data["toes"]
    except (KeyError, ValueError, OSError) as exc:
        raise MocapError(f"{arrays_path}: cannot read joints/toes arrays ({exc})") from exc
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or toes.shape != (joints.shape[0], 2, 3):
        raise MocapError(f"{arrays_path}: expected joints (N, 17, 3) and toes (N, 2, 3), got {joints.shape}, {toes.shape}")
    try:
        clips = tuple(ClipRecord(**c) for c in index["clips"])
    except (KeyError, TypeError) as exc:
        raise MocapError(f"{index_path}: bad clip records ({exc})") from exc
    end = 0
    for c in clips:
        if c.start != end or c.frames <= 0 or c.split not in SPLITS:
            raise MocapError(f"{index_path}: clip {c.name} has inconsistent start/frames/split")
        end += c.frames
    if end != joints.shape[0]:
        raise MocapError(f"{index_path}: clips cover {end} frames but the arrays hold {joints.shape[0]}")
    return MocapCache(joints=joints.astype(np.float32), toes=toes.astype(np.float32), clips=clips)


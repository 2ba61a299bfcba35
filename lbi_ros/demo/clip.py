"""The shipped demo clip: two short real motion-capture takes, H36M-17, metres, Z-up world.

``demo_clip.npz`` (next to this file, ~60 KB) is cut from the Bandai-Namco Research Motion Dataset
(CC BY-NC 4.0, non-commercial; see README "Licences") by :func:`extract_demo_clip` from a cache written
by ``lbi data prepare-mocap``. Both takes come from the held-out *test* split (style "old"), so the
demo never shows the model motion it was trained on. It is the only mocap-derived data in the
repository besides the shipped weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbi_ros.skeleton import NUM_JOINTS

CLIP_PATH = Path(__file__).with_name("demo_clip.npz")
# (take name, first frame, frame count): a walk across the view and a guiding gesture in place.
DEMO_TAKES: tuple[tuple[str, int, int], ...] = (
    ("dataset-1_walk-left_old_001", 20, 120),
    ("dataset-1_guide_old_001", 40, 120),
)


@dataclass(frozen=True)
class DemoTake:
    name: str
    joints_world_m: np.ndarray  # (F, 17, 3) Z-up world, metres
    toes_world_m: np.ndarray  # (F, 2, 3)
    fps: float


def extract_demo_clip(cache_dir: str | Path, out_path: str | Path = CLIP_PATH) -> Path:
    """Cut :data:`DEMO_TAKES` out of a mocap cache into ``out_path`` (float32, no pickle)."""
    from lbi_ros.mocap.cache import load_mocap_cache

    cache = load_mocap_cache(cache_dir)
    by_name = {clip.name: clip for clip in cache.clips}
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, (name, first, count) in enumerate(DEMO_TAKES):
        if name not in by_name:
            raise KeyError(f"take {name!r} is not in the cache {cache_dir}")
        clip = by_name[name]
        if first + count > clip.frames:
            raise ValueError(f"take {name!r} has {clip.frames} frames, {first + count} needed")
        sl = slice(clip.start + first, clip.start + first + count)
        arrays[f"joints_{i}"] = cache.joints[sl].astype(np.float32)
        arrays[f"toes_{i}"] = cache.toes[sl].astype(np.float32)
        meta.append({"name": name, "split": clip.split, "fps": clip.fps, "first_frame": first})
    arrays["meta"] = np.frombuffer(json.dumps({"takes": meta, "licence": "CC BY-NC 4.0, Bandai Namco Research "
                                               "Motion Dataset"}).encode(), dtype=np.uint8)
    np.savez_compressed(out_path, **arrays)
    return Path(out_path)


def load_demo_clip(path: str | Path = CLIP_PATH) -> tuple[DemoTake, ...]:
    """Read the clip back (validated; ``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo clip {path} is missing (the repository ships it)")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        takes = []
        for i, info in enumerate(meta["takes"]):
            joints, toes = data[f"joints_{i}"], data[f"toes_{i}"]
            if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or toes.shape != (len(joints), 2, 3):
                raise ValueError(f"{path}: take {i} has joints {joints.shape} and toes {toes.shape}")
            takes.append(DemoTake(info["name"], joints, toes, float(info["fps"])))
    return tuple(takes)

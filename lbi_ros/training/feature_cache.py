"""Feature cache: render a fixed pool of square crops once, run the frozen pose backbone once, store fp16 memmaps.

Why: on two CPU cores the frozen BlazePose encoder (~8 ms/crop in ONNX Runtime, one thread) and the mesh
renderer (~50 ms/crop) cost far more than the transformer step that reads their output. Computing the
features once lets the lifter train for many epochs; fresh 2D noise is drawn each epoch from the stored
clean keypoints (:mod:`lbi_ros.training.cached_data`), so only the image (and its crop box) is fixed.

Layout of a pool directory ``<root>/<name>-<key>/`` (``key`` hashes the taps, the crop rule, the data
config, the pool kind, size and seed, so a changed setting never reuses stale features):

* ``meta.json``: what was built (config repr, taps, shapes, chunk size, number of samples);
* one ``.npy`` per array, opened as a memmap (``np.lib.format.open_memmap``), first axis = sample:
  ``feat_<tap>`` (N, C, h, w) float16; ``joints_3d`` (N, 17, 3) root-relative camera metres; ``root_cam``
  (N, 3) m; ``keypoints_gt_px`` (N, 17, 2) projected clean joints; ``keypoints_px`` (N, 17, 3) the noisy
  keypoints the box was cut from; ``intrinsics`` (N, 4) [fx, fy, cx, cy]; ``box`` (N, 4) [cx, cy, w, h] px
  (the 3:4 deployment box; the square crop is :func:`lbi_ros.pose2d.roi.person_roi_from_box` of it);
  ``image_size`` (N, 2); ``keypoints_crop`` (N, 17, 3), ``keypoints_cam`` (N, 17, 2), ``crop_cam`` (N, 4): the
  model inputs of the stored noisy keypoints (what evaluation pools are scored with);
* ``done/<chunk>``: written (by rename) after chunk ``<chunk>``'s rows are flushed, so a killed build
  resumes exactly at the first chunk without a marker, and readers use only marked chunks.

Chunk ``c`` holds samples ``c * chunk ... (c + 1) * chunk - 1``; with ``num_shards`` processes, shard ``s``
builds chunks ``c % num_shards == s``. Sample ``i`` is a deterministic function of the pool's seed and
``i`` (training pools: :class:`SquareCropDataset` index i; evaluation pools: :func:`rendered_eval_set`'s
sample i), so a rebuilt chunk is bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lbi_ros.synth.dataset import SyntheticDataConfig

log = logging.getLogger(__name__)

CROP_RULE = "square(box3:4 centre, side=box.h, upright)@256 v1"
"""Identifies the crop rule in the cache key (bump when :func:`person_roi_from_box` changes)."""
TAPS = ("add_8", "add_9")
SAMPLE_ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "joints_3d": ((17, 3), "float32"),
    "root_cam": ((3,), "float32"),
    "keypoints_gt_px": ((17, 2), "float32"),
    "keypoints_px": ((17, 3), "float32"),
    "intrinsics": ((4,), "float32"),
    "box": ((4,), "float32"),
    "image_size": ((2,), "float32"),
    "keypoints_crop": ((17, 3), "float32"),
    "keypoints_cam": ((17, 2), "float32"),
    "crop_cam": ((4,), "float32"),
}
PoolKind = Literal["train", "eval"]


@dataclass(frozen=True)
class PoolSpec:
    """One pool: ``kind`` train (``SquareCropDataset`` indices) or eval (``rendered_eval_set`` samples)."""

    name: str
    kind: PoolKind
    data: SyntheticDataConfig
    num_samples: int
    seed: int = 0
    split: str = "train"
    taps: tuple[str, ...] = TAPS
    chunk: int = 512

    def key(self) -> str:
        text = repr((CROP_RULE, self.kind, self.data, self.num_samples, self.seed, self.split, self.taps,
                     self.chunk))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def directory(self, root: str | Path) -> Path:
        return Path(root) / f"{self.name}-{self.key()}"

    @property
    def num_chunks(self) -> int:
        return -(-self.num_samples // self.chunk)


def tap_shapes(taps: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    from lbi_ros.pose2d.blazepose import TAP_SHAPES

    return {t: TAP_SHAPES[t] for t in taps}


def init_pool(spec: PoolSpec, root: str | Path) -> Path:
    """Create the pool directory and its (empty) memmaps once; a no-op when ``meta.json`` exists."""
    directory = spec.directory(root)
    if (directory / "meta.json").is_file():
        return directory
    (directory / "done").mkdir(parents=True, exist_ok=True)
    n = spec.num_samples
    arrays = {f"feat_{t}": (s, "float16") for t, s in tap_shapes(spec.taps).items()} | SAMPLE_ARRAYS
    for name, (shape, dtype) in arrays.items():
        tmp = directory / f"{name}.tmp.npy"
        np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, *shape)).flush()
        os.replace(tmp, directory / f"{name}.npy")
    meta = {"name": spec.name, "kind": spec.kind, "num_samples": n, "chunk": spec.chunk, "seed": spec.seed,
            "split": spec.split, "taps": list(spec.taps), "crop_rule": CROP_RULE, "data": repr(spec.data),
            "key": spec.key()}
    tmp = directory / "meta.tmp.json"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, directory / "meta.json")
    return directory


def done_chunks(directory: str | Path) -> list[int]:
    return sorted(int(p.name) for p in (Path(directory) / "done").iterdir() if p.name.isdigit())


class _SampleSource:
    """Sample i of a pool (a dict with ``image_square`` and the synthetic sample keys)."""

    def __init__(self, spec: PoolSpec) -> None:
        from lbi_ros.training.square_crops import SquareCropDataset, SquareFrameRenderSet, eval_config

        self.spec = spec
        if spec.kind == "train":
            from dataclasses import replace

            self.dataset: Any = SquareCropDataset(replace(spec.data, seed=spec.seed,
                                                          samples_per_epoch=spec.num_samples))
            return
        from lbi_ros.mocap.cache import load_mocap_cache

        config = eval_config(spec.data, spec.data.cache_dir, spec.split, spec.num_samples, spec.seed)
        cache = load_mocap_cache(config.cache_dir)
        frames = np.sort(cache.frame_indices(spec.split))
        self.chosen = frames[(np.arange(spec.num_samples) * frames.size) // spec.num_samples]
        self.dataset = SquareFrameRenderSet(config, cache.joints, cache.toes)

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        if self.spec.kind == "train":
            return self.dataset[i]
        return self.dataset.render_frame(int(self.chosen[i]), np.random.default_rng([self.spec.seed, i]))


def make_encoder(taps: tuple[str, ...], threads: int = 1) -> Any:
    """ONNX Runtime backend of the frozen BlazePose encoder up to ``taps``: (B, 256, 256, 3) [0, 1] -> taps."""
    from lbi_ros.pose2d.backend import make_backend
    from lbi_ros.pose2d.blazepose import load_landmark_net

    return make_backend("onnxruntime", load_landmark_net(taps), "blazepose_" + "_".join(taps),
                        intra_op_threads=threads)


def encode_squares(encoder: Any, squares_rgb: np.ndarray) -> dict[str, np.ndarray]:
    """(B, 256, 256, 3) uint8 RGB -> {tap: (B, C, h, w) float32}; the net's input range is [0, 1]."""
    return encoder(np.ascontiguousarray(squares_rgb, dtype=np.float32) / np.float32(255.0))


def build_pool(spec: PoolSpec, root: str | Path, shard: int = 0, num_shards: int = 1, threads: int = 1,
               batch: int = 8, progress: bool = True) -> Path:
    """Build (or resume) the chunks of ``spec`` that belong to ``shard``; returns the pool directory."""
    import threadpoolctl

    directory = init_pool(spec, root)
    threadpoolctl.threadpool_limits(1)
    encoder = make_encoder(spec.taps, threads)
    source = _SampleSource(spec)
    arrays = {p.stem: np.load(p, mmap_mode="r+") for p in directory.glob("*.npy") if ".tmp" not in p.name}
    todo = [c for c in range(spec.num_chunks) if c % num_shards == shard and c not in set(done_chunks(directory))]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo) * spec.chunk, desc=f"{spec.name} shard {shard}", unit="crop", mininterval=10)
    t_render = t_encode = 0.0
    count = 0
    for c in todo:
        lo, hi = c * spec.chunk, min((c + 1) * spec.chunk, spec.num_samples)
        for start in range(lo, hi, batch):
            t0 = time.perf_counter()
            samples = [source(i) for i in range(start, min(start + batch, hi))]
            t1 = time.perf_counter()
            feats = encode_squares(encoder, np.stack([s["image_square"] for s in samples]))
            t2 = time.perf_counter()
            t_render, t_encode = t_render + t1 - t0, t_encode + t2 - t1
            rows = slice(start, start + len(samples))
            for tap in spec.taps:
                arrays[f"feat_{tap}"][rows] = feats[tap].astype(np.float16)
            for key in SAMPLE_ARRAYS:
                arrays[key][rows] = np.stack([s[key] for s in samples])
            count += len(samples)
            if bar is not None:
                bar.update(len(samples))
        for a in arrays.values():
            a.flush()
        marker = directory / "done" / f"{c}.tmp"
        marker.write_text(f"{time.time()}\n")
        os.replace(marker, directory / "done" / str(c))
        log.info("%s chunk %d done: %.1f ms/crop render, %.1f ms/crop encode", spec.name, c,
                 1e3 * t_render / max(count, 1), 1e3 * t_encode / max(count, 1))
    if bar is not None:
        bar.close()
    return directory


def load_pool(directory: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """``(arrays, rows, meta)``: every array of a pool as a read-only memmap, the indices of the rows whose
    chunks are finished (ascending), and ``meta.json``. Index the memmaps with ``rows`` (no copy up front)."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in sorted(directory.glob("*.npy")) if ".tmp" not in p.name}
    chunk, n = meta["chunk"], meta["num_samples"]
    parts = [np.arange(c * chunk, min((c + 1) * chunk, n)) for c in done_chunks(directory)]
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return arrays, rows, meta


def preset(name: str, cache_dir: str, assets_dir: str, num_samples: int | None = None) -> PoolSpec:
    """The pools of the issue-18 experiment. ``train``: training split, half mesh people in training
    appearance (seed 0); ``val_capsule`` / ``val_mesh``: val split, seed 12345 (``lbi eval --split val
    --seed 12345``); ``test_capsule`` / ``test_mesh``: test split, seed 2024, 5000 / 2000 samples (``lbi eval``
    defaults). ``*_mesh`` evaluation pools show held-out garments, hair and body shapes (``--set
    mesh.fraction=1 --set mesh.appearance=heldout``), exactly the samples ``lbi eval`` scores."""
    from dataclasses import replace

    from lbi_ros.render.mesh.mesh_people import MeshBodyConfig

    base = SyntheticDataConfig(cache_dir=cache_dir)
    mesh_train = MeshBodyConfig(fraction=0.5, assets_dir=assets_dir, appearance="train")
    mesh_heldout = MeshBodyConfig(fraction=1.0, assets_dir=assets_dir, appearance="heldout")
    table = {
        "train": ("train", replace(base, mesh=mesh_train), 200_000, 0, "train"),
        "val_capsule": ("eval", base, 1000, 12345, "val"),
        "val_mesh": ("eval", replace(base, mesh=mesh_heldout), 1000, 12345, "val"),
        "test_capsule": ("eval", base, 5000, 2024, "test"),
        "test_mesh": ("eval", replace(base, mesh=mesh_heldout), 2000, 2024, "test"),
    }
    if name not in table:
        raise ValueError(f"unknown pool {name!r}; choose from {sorted(table)}")
    kind, data, n, seed, split = table[name]
    return PoolSpec(name, kind, data, num_samples or n, seed=seed, split=split)  # type: ignore[arg-type]

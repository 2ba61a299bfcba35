"""Camera-only mode with a gated lifter: the landmark pass's backbone map shared with the lifter, or not.

Two builtin-mode chains run on the same demo-scene frames (:class:`lbi_ros.demo.scene.DemoScene`, rendered
before timing), each with its own detector state, as the node runs them (:func:`stream_config`, tiled
detector every 3rd frame while tracking):

* ``shared``: ``share_features_tap`` on; tracked people are cropped on the shared square, the landmark net
  returns the lifter's tap, and the lifter runs only its head (:meth:`LiftingPipeline.share_backbone`);
* ``standalone``: MediaPipe's ROIs; the lifter cuts its own square crop and runs its backbone again.

Per frame both chains run back to back (their order alternating), with torch, OpenCV and ONNX Runtime on
one thread; a frame's time is detect + landmarks + lift. Reported: median and p99 of the per-frame and
per-person times, the per-frame paired difference, the same per person on the frames where the shared chain
lifted every person from shared features and both chains lifted the same number (``all_shared``), the share
of people lifted from shared features, and the root-relative MPJPE of both chains against the scene's ground
truth (people matched by nearest root), over all their people and over the people both lifted (``common``).

Run: ``lbi bench shared-backbone --checkpoint <gated ckpt> [--frames 60]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("lbi.bench.shared_backbone")


def _chain(checkpoint: str, backend: str, shared: bool, max_people: int, cache_dir: str | None) -> tuple[Any, Any]:
    from dataclasses import replace

    from lbi_ros.pipeline import LiftingPipeline
    from lbi_ros.pose2d.keypoint_source import BuiltinKeypoints, stream_config
    from lbi_ros.runtime.factory import create_backend

    pipeline = LiftingPipeline(create_backend(checkpoint, backend, cache_dir=cache_dir, device="cpu", threads=1))
    tap = pipeline.share_backbone(checkpoint, backend, cache_dir) if shared else None
    if shared and tap is None:
        raise ValueError(f"{checkpoint} is not a gated lifter over a BlazePose tap: nothing to share")
    config = replace(stream_config(max_people, share_features_tap=tap), backend=backend, intra_op_threads=1)
    return BuiltinKeypoints(config), pipeline


def _mpjpe_mm(lifted, truth_cam: np.ndarray) -> dict[int, float]:
    """Ground-truth person -> root-relative error (mm) of the lifted person whose root is nearest to it."""
    errors: dict[int, float] = {}
    for person in lifted:
        j = int(np.argmin(np.linalg.norm(truth_cam[:, 0] - person.joints_cam_m[0], axis=1)))
        g = truth_cam[j]
        e = float(np.linalg.norm((person.joints_rel_m - person.joints_rel_m[0]) - (g - g[0]), axis=1).mean()) * 1e3
        errors[j] = min(e, errors.get(j, np.inf))
    return errors


def bench_shared_backbone(checkpoint: str, frames: int = 60, warmup: int = 5, start: int = 30, people: int = 2,
                          body: str = "capsule", backend: str = "onnxruntime", cache_dir: str | None = None
                          ) -> dict[str, Any]:
    import cv2
    import torch

    from lbi_ros.demo.scene import INTRINSICS, DemoScene

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    scene = DemoScene(people, seed=3, body=body)
    shots = [scene.frame(start + i) for i in range(warmup + frames)]
    chains = {"shared": _chain(checkpoint, backend, True, 4, cache_dir),
              "standalone": _chain(checkpoint, backend, False, 4, cache_dir)}
    rows: dict[str, dict[str, list]] = {name: {"frame_ms": [], "person_ms": [], "lift_ms": [], "people": [],
                                               "shared": [], "mpjpe_mm": []} for name in chains}
    for i, shot in enumerate(shots):
        for name in (list(chains) if i % 2 == 0 else list(chains)[::-1]):
            source, pipeline = chains[name]
            t0 = time.perf_counter()
            found = source(shot.image_rgb, shot.index / 30.0)
            t1 = time.perf_counter()
            result = pipeline.lift(shot.image_rgb, INTRINSICS, found.people, found.joint_set, shared=found.shared)
            t2 = time.perf_counter()
            if i < warmup:
                continue
            row, n = rows[name], max(1, len(result.people))
            row["frame_ms"].append((t2 - t0) * 1e3)
            row["person_ms"].append((t2 - t0) * 1e3 / n)
            row["lift_ms"].append((t2 - t1) * 1e3 / n)
            row["people"].append(len(result.people))
            row["shared"].append(sum(p.person_id in found.shared for p in result.people))
            row["mpjpe_mm"].append(_mpjpe_mm(result.people, shot.joints_cam_m))
    paired = np.asarray(rows["standalone"]["frame_ms"]) - np.asarray(rows["shared"]["frame_ms"])
    a, b = rows["shared"], rows["standalone"]
    full = [k for k in range(frames) if a["people"][k] == b["people"][k] == a["shared"][k] > 0]
    per_person = {name: np.asarray([rows[name]["person_ms"][k] for k in full]) for name in rows}
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "backend": backend, "frames": frames, "body": body,
                               "machine": platform.platform(), "paired_saving_ms_median": float(np.median(paired)),
                               "paired_saving_ms_p99": float(np.percentile(paired, 99)),
                               "paired_saving_ms_p1": float(np.percentile(paired, 1)), "all_shared_frames": len(full)}
    if full:
        saving = per_person["standalone"] - per_person["shared"]
        for name, values in [*per_person.items(), ("paired_saving", saving)]:
            summary[f"all_shared_{name}_person_ms_median"] = float(np.median(values))
            summary[f"all_shared_{name}_person_ms_p99"] = float(np.percentile(values, 99))
    for name, row in rows.items():
        for key in ("frame_ms", "person_ms", "lift_ms"):
            summary[f"{name}_{key}_median"] = float(np.median(row[key]))
            summary[f"{name}_{key}_p99"] = float(np.percentile(row[key], 99))
        summary[f"{name}_people_per_frame"] = float(np.mean(row["people"]))
        summary[f"{name}_shared_fraction"] = float(np.sum(row["shared"]) / max(1, np.sum(row["people"])))
        summary[f"{name}_mpjpe_mm"] = float(np.mean([e for frame in row["mpjpe_mm"] for e in frame.values()]))
    common = [(e, rows["standalone"]["mpjpe_mm"][k][j]) for k, frame in enumerate(rows["shared"]["mpjpe_mm"])
              for j, e in frame.items() if j in rows["standalone"]["mpjpe_mm"][k]]
    summary["common_people"] = len(common)
    summary["shared_mpjpe_mm_common"], summary["standalone_mpjpe_mm_common"] = map(float, np.mean(common, axis=0))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="default", help="a gated lifter over a BlazePose tap (.safetensors)")
    parser.add_argument("--frames", type=int, default=60, help="timed frames (default 60)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--start", type=int, default=30, help="first demo-scene frame")
    parser.add_argument("--people", type=int, default=2)
    parser.add_argument("--body", default="capsule", choices=("capsule", "mesh"))
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache of the lifter (default ~/.cache/lbi_ros)")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")


def run(args: argparse.Namespace) -> int:
    summary = bench_shared_backbone(args.checkpoint, args.frames, args.warmup, args.start, args.people, args.body,
                                    args.backend, args.cache_dir)
    log.info("%s", json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


"""Per-frame latency of the BlazePose person detector (:class:`lbi_ros.pose2d.detector.PersonDetector`).

Scenes: scikit-image's astronaut photo (512 x 512, one person) and a 640 x 480 grey canvas with three
scaled copies of it (three people). For each scene, backend (torch, ONNX Runtime) and mode, the same
frame is fed ``frames`` times after ``warmup`` frames, with torch, OpenCV and ONNX Runtime on one thread;
the medians of :attr:`PersonDetector.last_timings` are reported. Modes:

* ``detect``: the detector runs on every frame (``reuse_landmark_roi=False``);
* ``reuse``: MediaPipe's tracking: ``max_people`` = the people in the scene, so once everyone is found the
  next frames crop from the previous landmarks' ROI and skip the detector.

Run: ``lbi bench detector-latency [--frames 30] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("lbi.bench.detector")


def three_people_canvas(person_rgb: np.ndarray, width: int = 640, height: int = 480,
                        person_px: int = 208) -> np.ndarray:
    """(height, width, 3) uint8 grey canvas with three ``person_px`` squares of ``person_rgb`` side by side.

    208 px because the detector is scale-sensitive on this head-and-shoulders portrait (each copy is only
    ~73 px of the 224 detector input): at 200 px the middle copy scores 0.34 (< 0.5) and is missed, at
    206-212 px all three score 0.57-0.91.
    """
    import cv2

    canvas = np.full((height, width, 3), 128, np.uint8)
    small = cv2.resize(person_rgb, (person_px, person_px), interpolation=cv2.INTER_AREA)
    gap = (width - 3 * person_px) // 4
    top = (height - person_px) // 2
    for k in range(3):
        left = gap + k * (person_px + gap)
        canvas[top : top + person_px, left : left + person_px] = small
    return canvas


def _scenes() -> dict[str, tuple[np.ndarray, int]]:
    import skimage.data

    astronaut = skimage.data.astronaut()
    return {"astronaut_512": (astronaut, 1), "three_640x480": (three_people_canvas(astronaut), 3)}


def bench_detector(frames: int = 30, warmup: int = 5, backends: tuple[str, ...] = ("torch", "onnxruntime"),
                   cache_dir: str | None = None) -> list[dict[str, Any]]:
    """One row per (scene, backend, mode): median detect / landmarks / total ms, p99 of the per-frame total,
    people found, detector runs."""
    import cv2
    import torch

    from lbi_ros.pose2d.detector import DetectorConfig, PersonDetector

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows = []
    for backend in backends:
        base = PersonDetector(DetectorConfig(backend=backend, intra_op_threads=1, cache_dir=cache_dir))
        for scene, (image, people) in _scenes().items():
            for mode in ("detect", "reuse"):
                cfg = DetectorConfig(max_people=people if mode == "reuse" else 4,
                                     reuse_landmark_roi=mode == "reuse", backend=backend)
                det = PersonDetector(cfg, base.detector_backend, base.landmark_backend)
                timings, found = [], []
                for i in range(warmup + frames):
                    found.append(len(det.detect(image)))
                    if i >= warmup and det.last_timings is not None:
                        timings.append(det.last_timings)
                row = {
                    "scene": scene, "backend": backend, "mode": mode,
                    "detect_ms": float(np.median([t.detect_ms for t in timings])),
                    "landmarks_ms": float(np.median([t.landmarks_ms for t in timings])),
                    "total_ms": float(np.median([t.total_ms for t in timings])),
                    "total_p99_ms": float(np.percentile([t.total_ms for t in timings], 99)),
                    "people": int(np.median(found[warmup:])),
                    "detector_runs": sum(t.ran_detector for t in timings),
                    "frames": frames,
                }
                log.info("%s", row)
                rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scene':15s} {'backend':12s} {'mode':7s} {'detect':>7s} {'landmk':>7s} {'total':>7s} {'tot p99':>7s} "
             f"{'people':>6s} {'det runs':>8s}"]
    for r in rows:
        lines.append(f"{r['scene']:15s} {r['backend']:12s} {r['mode']:7s} {r['detect_ms']:7.1f} "
                     f"{r['landmarks_ms']:7.1f} {r['total_ms']:7.1f} {r['total_p99_ms']:7.1f} {r['people']:6d} "
                     f"{r['detector_runs']:4d}/{r['frames']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=30, help="timed frames per row (default 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backends", default="torch,onnxruntime", help="comma-separated: torch,onnxruntime")
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default <repo>/.cache/pose2d_onnx)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    rows = bench_detector(args.frames, args.warmup, tuple(args.backends.split(",")), args.cache_dir)
    table = format_table(rows)
    log.info("ms per frame, median (and p99 of the total), one thread (%s):\n%s", platform.processor() or platform.machine(), table)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "machine": platform.platform()}, indent=2))
    return 0


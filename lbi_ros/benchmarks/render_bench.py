"""``lbi bench render``: synthetic training-sample throughput on one core.

Times the whole per-sample path the training loader runs (pose sampling, bone retargeting or posing a
mesh body, camera, 2D noise, crop box, rendering, model-input encoding) in a single process with OpenCV,
BLAS and (for ``--body mesh``) torch limited to one thread, and reports median / p99 per-crop time and
crops/s per core (1 / median; also the mean-based rate, which includes building a new mesh identity every
``mesh.identity_block`` samples). Poses come from a mocap cache when ``--src`` is given, otherwise from
the procedural generator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

log = logging.getLogger("lbi.bench.render")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--src", default="", help="mocap cache folder (default: procedural poses)")
    parser.add_argument("--samples", type=int, default=1000, help="timed samples (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--body", choices=("capsule", "mesh"), default="capsule",
                        help="capsule people, or mesh people (Anny body + MakeHuman clothes/hair, headless GL)")
    parser.add_argument("--assets", default="", help="MakeHuman clothes/hair root for --body mesh "
                        "(default: the vendored subset)")


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

    cv2.setNumThreads(1)
    # Per core means one thread: numpy's BLAS (skinning, garment fitting) would otherwise take another core.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if args.body == "mesh":  # anny builds rest bodies with torch: one intra-op thread as well
        import torch

        torch.set_num_threads(1)
    from lbi_ros.render.mesh.mesh_people import MeshBodyConfig

    mesh = MeshBodyConfig(fraction=1.0 if args.body == "mesh" else 0.0, assets_dir=args.assets)
    config = SyntheticDataConfig(cache_dir=args.src, seed=args.seed, samples_per_epoch=args.samples, mesh=mesh)
    dataset = SyntheticPoseDataset(config)
    t0 = time.perf_counter()
    _ = dataset.renderer, dataset.mocap  # build banks / load the cache outside the timed loop
    setup_s = time.perf_counter() - t0
    # Samples go through __getitem__ as in training: consecutive indices share a mesh identity
    # (MeshBodyConfig.identity_block), so identity building is amortised as it is in a training run.
    for i in range(args.warmup):
        dataset[args.samples - 1 - i % args.samples]
    times = np.empty(args.samples)
    cpu_times = np.empty(args.samples)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for i in range(args.samples):
        t, c = time.perf_counter(), time.thread_time()
        dataset[i]
        times[i] = time.perf_counter() - t
        cpu_times[i] = time.thread_time() - c
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    median_ms, p99_ms = 1000 * float(np.median(times)), 1000 * float(np.percentile(times, 99))
    cpu_median_ms = 1000 * float(np.median(cpu_times))
    result = {
        "benchmark": "render",
        "crop": [config.crop.height, config.crop.width],
        "pose_source": f"mocap cache {args.src}" if args.src else "procedural",
        "body": args.body,
        "samples": args.samples,
        "median_ms": round(median_ms, 3),
        "p99_ms": round(p99_ms, 3),
        "crops_per_s_per_core": round(1000.0 / median_ms, 1),
        "crops_per_s_mean": round(args.samples / wall, 1),
        "cpu_median_ms": round(cpu_median_ms, 3),
        "crops_per_cpu_s": round(1000.0 / cpu_median_ms, 1),
        "cpu_utilisation": round(cpu / wall, 2),
        "load_average_before": round(load_before, 2),
        "setup_s": round(setup_s, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(
        f"render {args.body} {config.crop.height}x{config.crop.width} ({result['pose_source']}), "
        f"{args.samples} samples, "
        f"1 process: median {median_ms:.3f} ms, p99 {p99_ms:.3f} ms per crop -> "
        f"{result['crops_per_s_per_core']:.0f} crops/s per core (mean rate {result['crops_per_s_mean']:.0f}/s)"
    )
    if result["cpu_utilisation"] < 0.9 or load_before > 0.5:
        print(f"note: load average {load_before:.1f} before the run and the process got "
              f"{result['cpu_utilisation']:.0%} of a core; other load skews the numbers "
              f"(median CPU time per crop {cpu_median_ms:.3f} ms -> {result['crops_per_cpu_s']:.0f} crops per CPU-second)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0

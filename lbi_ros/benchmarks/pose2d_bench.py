"""Per-crop cost of the converted BlazePose networks on the CPU: torch eager vs ONNX Runtime, one thread.

Why: the LBI encoder taps the landmark net's FPN and the built-in 2D detector runs detector + landmark
net per frame, so both budgets need these numbers (they go into :mod:`lbi_ros.pose2d.blazepose`'s
docstring). Measured with::

    python -c "from lbi_ros.benchmarks.pose2d_bench import bench_pose2d, format_rows;
               print(format_rows(bench_pose2d(runtimes=('torch', 'onnxruntime', 'tflite'))))"

Batch 1, fixed seeded input, ``warmup`` untimed calls then ``iters`` timed ones; torch with
``torch.set_num_threads(threads)`` under ``inference_mode``, ONNX Runtime with ``intra_op_num_threads``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lbi_ros.benchmarks.model_bench import time_calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pose2dTiming:
    model: str
    """``landmark`` (landmarks, flag, world), ``encoder`` (up to ``add_10`` only) or ``detector``."""
    runtime: str
    median_ms: float
    p90_ms: float
    p99_ms: float
    iters: int
    threads: int


def _time(call: Callable[[], object], warmup: int, iters: int) -> tuple[float, float, float]:
    times = time_calls(call, warmup, iters) * 1e3
    return float(np.median(times)), float(np.percentile(times, 90)), float(np.percentile(times, 99))


def bench_pose2d(iters: int = 30, warmup: int = 5, threads: int = 1,
                 runtimes: tuple[str, ...] = ("torch", "onnxruntime")) -> list[Pose2dTiming]:
    """Median, p90 and p99 milliseconds per 1-crop call for each model x runtime (model files must be cached).

    ``runtimes``: any of ``torch``, ``onnxruntime`` and ``tflite`` (Google's interpreter with its default
    XNNPACK delegate, ai-edge-litert from requirements/dev.txt; whole files only, so no ``encoder`` row).
    """
    from lbi_ros.pose2d.blazepose import export_onnx, load_detector_net, load_landmark_net

    nets = {"landmark": (load_landmark_net(), 256, 0.0), "encoder": (load_landmark_net(("add_10",)), 256, 0.0),
            "detector": (load_detector_net(), 224, -1.0)}
    rng = np.random.default_rng(0)
    rows: list[Pose2dTiming] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="lbi-pose2d-bench-") as tmp:
            for model, (net, size, low) in nets.items():
                x = rng.uniform(low, 1.0, (1, size, size, 3)).astype(np.float32)
                if "torch" in runtimes:
                    xt = torch.from_numpy(x)

                    def call_torch(net=net, xt=xt) -> object:
                        with torch.inference_mode():
                            return net(xt)

                    rows.append(Pose2dTiming(model, "torch", *_time(call_torch, warmup, iters), iters, threads))
                if "onnxruntime" in runtimes:
                    import onnxruntime as ort

                    path = export_onnx(net, Path(tmp) / f"{model}.onnx")
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = threads
                    options.inter_op_num_threads = 1
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    feed = {"image_rgb": x}
                    rows.append(Pose2dTiming(model, "onnxruntime",
                                             *_time(lambda s=session, f=feed: s.run(None, f), warmup, iters),
                                             iters, threads))
                if "tflite" in runtimes and model != "encoder":  # the file cannot stop at a tap
                    from ai_edge_litert.interpreter import Interpreter

                    from lbi_ros.pose2d.blazepose import DETECTOR_FILE, LANDMARK_FILE
                    from lbi_ros.pose2d.model_files import model_path

                    interpreter = Interpreter(model_path=str(model_path(DETECTOR_FILE if model == "detector"
                                                                       else LANDMARK_FILE)), num_threads=threads)
                    interpreter.allocate_tensors()
                    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
                    rows.append(Pose2dTiming(model, "tflite", *_time(interpreter.invoke, warmup, iters), iters, threads))
                log.info("timed %s", model)
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def format_rows(rows: list[Pose2dTiming]) -> str:
    """A small text table of :func:`bench_pose2d`'s rows."""
    lines = [f"{'model':10s} {'runtime':12s} {'median ms':>10s} {'p90 ms':>8s} {'p99 ms':>8s}"]
    lines += [f"{r.model:10s} {r.runtime:12s} {r.median_ms:10.1f} {r.p90_ms:8.1f} {r.p99_ms:8.1f}" for r in rows]
    return "\n".join(lines)

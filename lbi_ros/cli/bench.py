"""``lbi bench {model,render,...}``: benchmarks that print medians and p99 and compare within one run.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only
wires them to subcommands, importing them lazily so one missing optional backend cannot break the
others.
"""

from __future__ import annotations

import argparse
import importlib

# subcommand -> (module, help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("lbi_ros.benchmarks.model_bench", "parameters, FLOPs and latency of the lifters"),
    "render": ("lbi_ros.benchmarks.render_bench", "training-crop rendering throughput per core"),
    "detector": ("lbi_ros.benchmarks.detector_eval", "the built-in 2D detector on rendered held-out people: "
                 "recall, precision, 2D error, PCK@0.1"),
    "detector-latency": ("lbi_ros.benchmarks.detector_bench",
                         "the built-in detector's time per frame by stage, ONNX Runtime vs torch, 1-3 people"),
    "shared-backbone": ("lbi_ros.benchmarks.shared_backbone_bench",
                        "camera-only mode with a gated lifter: the landmark pass's features shared vs the lifter's "
                        "own backbone, paired per frame"),
    "detector-noise": ("lbi_ros.benchmarks.detector_noise",
                       "built-in detector's 2D errors on rendered people -> fitted synthetic noise config"),
    "node": ("lbi_ros.ros.tools.node_bench", "the lifter node over DDS: overload (latency, drops) and soak (RSS, fds, queues, gaps)"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark")
    bench_sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        sub = bench_sub.add_parser(name, help=help_text)
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)

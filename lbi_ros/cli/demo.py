"""``lbi demo``: the one-command demo — a real ROS 2 graph with the lifter node and default weights.

Prints accuracy (MPJPE, root error) and latency and writes ``demo.png`` and ``demo.json``.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from lbi_ros.ros.demo import run_demo

    result = run_demo(args.out, frames=args.frames, rate_hz=args.rate, model_path=args.model,
                      backend=args.backend, seed=args.seed)
    m, d = result.metrics, result.node_diagnostics
    print(f"backend            {d.get('backend', args.backend)}  (model: {d.get('model', args.model or 'default')})")
    print(f"frames             {m.frames_with_output}/{m.frames_published} lifted, "
          f"{m.people_lifted}/{m.people_expected} people")
    print(f"accuracy           MPJPE {m.mpjpe_mm:.1f} mm, P-MPJPE {m.p_mpjpe_mm:.1f} mm, PCK@150 {m.pck150:.1f} %")
    print(f"metric placement   root error {m.root_error_mm:.0f} mm (depth {m.depth_error_mm:.0f} mm)")
    print(f"latency (end-to-end, stamp -> received)  median {m.latency_ms_median:.1f} ms, p99 {m.latency_ms_p99:.1f} ms")
    stages = sorted(k for k in d if k.startswith("latency_") and k.endswith("_median"))
    if stages:
        print("node stages (median ms)  " + ", ".join(
            f"{k.removeprefix('latency_').removesuffix('_ms_median')} {d[k]}" for k in stages))
    print(f"picture            {result.picture}")
    print(f"report             {result.report}")
    return 0 if m.people_lifted > 0 else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the ROS 2 demo graph and report accuracy and latency")
    parser.add_argument("--out", default="out/demo", help="output folder (picture, report, ROS logs)")
    parser.add_argument("--frames", type=int, default=None, help="frames to play (default: the whole clip)")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate, Hz")
    parser.add_argument("--model", default="", help="checkpoint or ONNX file (default: shipped weights)")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)

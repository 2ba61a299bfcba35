"""``lbi demo``: the one-command demo — a real ROS 2 graph with the lifter node and default weights.

Prints accuracy (MPJPE, metric position error), end-to-end and node-added latency, and sync counts;
writes ``demo.png``, ``demo.json`` and an MCAP recording of every topic to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil


def run(args: argparse.Namespace) -> int:
    from lbi_ros.ros.tools.demo import run_demo

    result = run_demo(args.out, duration_s=args.duration, rate_hz=args.rate, people=args.people,
                      model_path=args.model, backend=args.backend, seed=args.seed, relay=not args.no_relay,
                      body=args.body)
    summary = json.loads(result.report.read_text())["summary"]
    m, d = result.metrics, result.node_diagnostics
    print(f"backend          {summary['backend']}  (model: {d.get('model', args.model or 'default weights')})")
    print(f"frames           {m.frames_out}/{m.frames_in} lifted at {args.rate:g} Hz, {m.people_lifted}/"
          f"{m.people_expected} people; sync matched {summary['sync_matched']}, dropped {summary['sync_dropped']}")
    print(f"accuracy         MPJPE {m.mpjpe_mm:.1f} mm, P-MPJPE {m.p_mpjpe_mm:.1f} mm, PCK@150 {m.pck150:.1f} %")
    print(f"metric position  root error {m.position_error_mm:.0f} mm (depth {m.depth_error_mm:.0f} mm)")
    print(f"latency          end to end p50 {m.latency_p50_ms:.1f} ms, p99 {m.latency_p99_ms:.1f} ms; "
          f"output at most {m.max_output_lag_frames} frame(s) behind")
    if not args.no_relay:
        print(f"                 bare relay p50 {m.relay_latency_p50_ms:.1f} ms, p99 {m.relay_latency_p99_ms:.1f} ms"
              f" -> node-added p50 {m.node_added_p50_ms:.1f} ms, p99 {m.node_added_p99_ms:.1f} ms")
    stages = sorted(k for k in d if k.startswith("latency_") and k.endswith("_median"))
    if stages:
        print("node stages      median ms: " + ", ".join(
            f"{k.removeprefix('latency_').removesuffix('_ms_median')} {d[k]}" for k in stages))
    print(f"wrote            {result.picture}, {result.report}, {result.recording}")
    if args.json:
        shutil.copyfile(result.report, args.json) if str(args.json) != str(result.report) else None
    return 0 if m.people_lifted > 0 else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the ROS 2 demo graph and report accuracy and latency")
    parser.add_argument("--out", default="out/demo", help="output folder (picture, report, MCAP, ROS logs)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of camera stream")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    parser.add_argument("--people", type=int, default=2, help="people in the scene (1-4)")
    parser.add_argument("--json", default=None, help="also write the report JSON here")
    parser.add_argument("--model", default="", help="checkpoint or ONNX file (default: shipped weights)")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    parser.add_argument("--no-relay", action="store_true", help="skip the bare relay latency baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--body", choices=("capsule", "mesh"), default="capsule",
                        help="people drawn as capsules, or as skinned clothed bodies (headless GL)")
    parser.set_defaults(func=run)

"""``lbi demo``: the one-command demo — a real ROS 2 graph with the lifter node and default weights.

Prints accuracy (MPJPE, metric position error), end-to-end and node-added latency (per frame, lifter
minus relay on the same image), the node's own receive-to-publish time, what was delivered, and every
deviation from the node's defaults; writes ``demo.png``, ``demo.json`` and an MCAP recording of every
topic to ``--out``.

``--keypoints builtin``: camera only. The player publishes no 2D keypoints; the node finds the people
itself (``keypoints_source:=builtin``), and the demo also prints detection recall and precision (people
matched to the truth by 2D proximity), and the 2D error and PCK@0.1 against the rendered truth
(:mod:`lbi_ros.benchmarks.detector_eval`); ``summary.detection_*`` in the JSON. It also prints the
root-relative MPJPE of LBI, the 2D-only lifter and BlazePose world landmarks on the same frames and people
(:mod:`lbi_ros.demo.peers`); ``summary.peer_mpjpe_mm`` in the JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil

# Camera rate of the camera-only demo: the node detects (tiled BlazePose, ~50 ms median per frame with two
# people on this project's shared 2-core CPU) and lifts every frame; at 30 Hz it drops more than half.
BUILTIN_RATE_HZ = 10.0


def run(args: argparse.Namespace) -> int:
    from lbi_ros.ros.tools.demo import run_demo

    if args.rate is None:  # camera-only: the node also runs the 2D detector (~50 ms a frame on 2 CPU cores)
        args.rate = BUILTIN_RATE_HZ if args.keypoints == "builtin" else 30.0
    result = run_demo(args.out, duration_s=args.duration, rate_hz=args.rate, people=args.people,
                      model_path=args.model, backend=args.backend, precision=args.precision, seed=args.seed,
                      relay=not args.no_relay, body=args.body, keypoints=args.keypoints)
    summary = json.loads(result.report.read_text())["summary"]
    m, d = result.metrics, result.node_diagnostics
    print(f"backend          {summary['backend']}  (model: {d.get('model', args.model or 'default weights')})")
    deviations = summary["node_deviations"]
    print("node             " + ("default parameters and QoS" if not deviations else
                                 "default QoS; parameters changed: " + " ".join(deviations)))
    print(f"scene            {summary['distinct_poses']} distinct poses, played {summary['playback']} "
          f"({args.people} people, takes of {summary['take_length_frames']} frames)")
    print(f"frames           {m.frames_out}/{m.frames_in} lifted at {args.rate:g} Hz, {m.people_lifted}/"
          f"{m.people_expected} people; sync matched {summary['sync_matched']}, dropped {summary['sync_dropped']}")
    print(f"accuracy         MPJPE {m.mpjpe_mm:.1f} mm, P-MPJPE {m.p_mpjpe_mm:.1f} mm, PCK@150 {m.pck150:.1f} %")
    print(f"metric position  root error {m.position_error_mm:.0f} mm (depth {m.depth_error_mm:.0f} mm)")
    print(f"latency          end to end p50 {m.latency_p50_ms:.1f} ms, p99 {m.latency_p99_ms:.1f} ms; "
          f"output at most {m.max_output_lag_frames} frame(s) behind")
    if not args.no_relay and args.keypoints == "truth":  # no relay baseline in builtin mode
        print(f"                 bare relay p50 {m.relay_latency_p50_ms:.1f} ms, p99 {m.relay_latency_p99_ms:.1f} ms")
        print(f"                 node-added (lifter - relay, per frame, {m.node_added_pairs} frames) "
              f"p50 {m.node_added_p50_ms:.1f} ms, p99 {m.node_added_p99_ms:.1f} ms")
    print(f"                 node's own image callback -> skeletons published p50 "
          f"{summary['node_receive_to_publish_p50_ms']:.1f} ms, p99 {summary['node_receive_to_publish_p99_ms']:.1f} ms")
    print(f"                 all {summary['processes_sharing_cores']} processes share the "
          f"{summary['cpu_cores']} CPU cores")
    print(f"delivered        to the node: images {summary['images_received_by_node']}/{summary['frames_sent']}, "
          f"CameraInfo {summary['camera_info_received_by_node']}/{summary['frames_sent']} "
          f"(lost in DDS: {summary['images_lost_in_dds']} images, {summary['camera_info_lost_in_dds']} CameraInfo)")
    stages = sorted(k for k in d if k.startswith("latency_") and k.endswith("_median"))
    if stages:
        print("node stages      median ms: " + ", ".join(
            f"{k.removeprefix('latency_').removesuffix('_ms_median')} {d[k]}" for k in stages))
    if result.detection is not None:  # --keypoints builtin: the node's own 2D people against the rendered truth
        t = result.detection
        print(f"2D detection     recall {t.recall:.3f} ({t.people_matched}/{t.people_present} people present), "
              f"precision {t.precision:.3f} ({t.people_matched}/{t.detections} found); on the COCO-mappable joints: "
              f"mean error {t.error_2d_px:.1f} px, PCK@0.1 box {t.pck_2d:.1f} %")
    if result.peers is not None:  # --keypoints builtin: the peers on the frames and people LBI was scored on
        p = result.peers
        print(f"peer (same frames, root-relative MPJPE)  LBI {p.lbi:.1f} mm | 2D-only {p.lift2d:.1f} mm | "
              f"BlazePose world {p.blazepose_world:.1f} mm  ({p.people} people; BlazePose without its joint "
              f"offsets {p.blazepose_world_without_offsets:.1f} mm)")
    print(f"wrote            {result.picture}, {result.report}, {result.recording}")
    if args.json:
        shutil.copyfile(result.report, args.json) if str(args.json) != str(result.report) else None
    return 0 if m.people_lifted > 0 else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the ROS 2 demo graph and report accuracy and latency")
    parser.add_argument("--out", default="out/demo", help="output folder (picture, report, MCAP, ROS logs)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of camera stream")
    parser.add_argument("--rate", type=float, default=None,
                        help=f"camera rate, Hz (default 30; {BUILTIN_RATE_HZ:g} with --keypoints builtin)")
    parser.add_argument("--people", type=int, default=2, help="people in the scene (1-4)")
    parser.add_argument("--json", default=None, help="also write the report JSON here")
    parser.add_argument("--model", default="", help="checkpoint or ONNX file (default: shipped weights)")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="the node's precision parameter (int8: the image backbone in ONNX Runtime on the CPU)")
    parser.add_argument("--no-relay", action="store_true", help="skip the bare relay latency baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keypoints", choices=("truth", "builtin"), default="truth",
                        help="truth = the player publishes the scene's noisy 2D keypoints; builtin = camera only, "
                             "the node detects the people itself (keypoints_source:=builtin)")
    parser.add_argument("--body", choices=("capsule", "mesh"), default="capsule",
                        help="people drawn as capsules, or as skinned clothed bodies (headless GL)")
    parser.set_defaults(func=run)

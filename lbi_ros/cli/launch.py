"""``lbi launch``: what ``ros2 launch lbi_ros lift.launch.py`` does, for the pip environment (no launch_ros).

Starts the lifter node with ``config/lift.yaml`` and the same remapping arguments as the launch file,
through the project's ROS environment helper (loopback-only discovery; the domain is ``ROS_DOMAIN_ID``
if you set one, else one reserved for this run; Fast DDS gets ``config/fastdds_large_frames.xml`` unless
``FASTDDS_DEFAULT_PROFILES_FILE`` names another profile), and stops it cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path


def default_params_file() -> Path | None:
    from lbi_ros.ros.environment import project_root

    root = project_root()
    return root / "config" / "lift.yaml" if root else None


def node_command(args: argparse.Namespace) -> list[str]:
    camera = args.camera.rstrip("/")
    command = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "--params-file", str(args.params_file),
               "-r", f"image:={args.image or camera + '/image_raw'}",
               "-r", f"camera_info:={args.camera_info or camera + '/camera_info'}",
               "-r", f"keypoints_2d:={args.keypoints}"]
    if args.model:
        command += ["-p", f"model_path:={args.model}"]
    if args.backend:
        command += ["-p", f"backend:={args.backend}"]
    if args.keypoints_source:
        command += ["-p", f"keypoints_source:={args.keypoints_source}"]
    if args.precision:
        command += ["-p", f"precision:={args.precision}"]
    return command


def run(args: argparse.Namespace) -> int:
    from lbi_ros.ros.environment import popen_ros, reserve_domain_id, ros_environment

    if args.params_file is None or not Path(args.params_file).is_file():
        raise FileNotFoundError(f"parameters file {args.params_file} not found; pass --params-file")
    reservation = None
    if os.environ.get("ROS_DOMAIN_ID", "").isdigit():
        domain = int(os.environ["ROS_DOMAIN_ID"])
    else:
        reservation = reserve_domain_id()
        domain = reservation.domain_id
    # A process started in the background by a non-interactive shell (`cmd &`, CI scripts) inherits SIGINT
    # ignored, and Python then keeps ignoring it: "Ctrl-C stops it" must hold however we were started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    profile = ros_environment(domain).get("FASTDDS_DEFAULT_PROFILES_FILE", "none (Fast DDS defaults)")
    print(f"lbi launch: lifter node on ROS domain {domain} (loopback only), DDS profile {profile}; Ctrl-C stops it",
          flush=True)
    proc = popen_ros(node_command(args), domain)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # SIGINT for a clean stop; a node that has not stopped after 30 s (a stuck driver, a starved
        # machine) gets SIGTERM, then SIGKILL, so Ctrl-C never leaves it running.
        for sig, grace_s in ((signal.SIGINT, 30.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            proc.send_signal(sig)
            try:
                return proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()
    finally:
        if reservation is not None:
            reservation.release()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("launch", help="start the lifter node as lift.launch.py does (pip environment)")
    parser.add_argument("--params-file", type=Path, default=default_params_file())
    parser.add_argument("--camera", default="/camera", help="camera namespace")
    parser.add_argument("--image", default=None, help="default: <camera>/image_raw")
    parser.add_argument("--camera-info", default=None, help="default: <camera>/camera_info")
    parser.add_argument("--keypoints", default="/keypoints_2d", help="lbi_ros/Person2DArray topic")
    parser.add_argument("--model", default="", help="checkpoint or ONNX file (default: shipped weights)")
    parser.add_argument("--backend", default="", choices=("", "auto", "tensorrt", "onnxruntime", "torch"))
    parser.add_argument("--precision", default="", choices=("", "fp32", "fp16", "int8"),
                        help="int8: the image backbone in ONNX Runtime on the CPU (default: the params file's, fp32)")
    parser.add_argument("--keypoints-source", default="", choices=("", "topic", "builtin"),
                        help="builtin = camera alone: the node detects the people and publishes them on --keypoints "
                             "(default: the params file's value, topic)")
    parser.set_defaults(func=run)

"""The one-command demo: a real ROS 2 graph (player -> lifter node [+ relay] -> recorder) on loopback.

Processes talk over Fast DDS in a domain reserved for this run: the demo player (camera and 2D
detector stand-in, :mod:`lbi_ros.ros.tools.demo_player`), the lifter node (:mod:`lbi_ros.ros.lift_node`,
default weights unless told otherwise), optionally a bare relay node on the same inputs (the
baseline of node-added latency, :mod:`lbi_ros.ros.tools.relay_node`), and this process, which records
every topic to MCAP, scores the skeletons against the scene's ground truth and draws the picture.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbi_ros.demo.report import DemoMetrics, ReceivedSkeletons, draw, score
from lbi_ros.demo.scene import DemoScene
from lbi_ros.ros.environment import popen_ros, reserve_domain_id, ros_environment_applied

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    metrics: DemoMetrics
    node_diagnostics: dict[str, str]
    picture: Path
    report: Path
    recording: Path


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _skeletons(msg) -> ReceivedSkeletons:
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    people = {s.id: np.array([[p.x, p.y, p.z] for p in s.positions]) for s in msg.skeletons}
    return ReceivedSkeletons(stamp, time.time_ns(), people)


def run_demo(out_dir: str | Path, duration_s: float = 20.0, rate_hz: float = 30.0, people: int = 2,
             model_path: str = "", backend: str = "auto", seed: int = 0, relay: bool = True,
             startup_timeout_s: float = 120.0, body: str = "capsule") -> DemoResult:
    """Run the graph in a ROS domain reserved for it; this process's environment is restored after."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with reserve_domain_id() as reservation, ros_environment_applied(reservation.domain_id, out / "ros-log"):
        return _run_demo(out, reservation.domain_id, duration_s, rate_hz, people, model_path, backend, seed, relay,
                         startup_timeout_s, body)


def _run_demo(out: Path, domain_id: int, duration_s: float, rate_hz: float, people: int, model_path: str,
              backend: str, seed: int, relay: bool, startup_timeout_s: float, body: str) -> DemoResult:
    log_dir = out / "ros-log"
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from lbi_ros.msg import Person2DArray, Skeleton3DArray
    from lbi_ros.ros.tools.mcap_recorder import McapRecorder

    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    received: list[ReceivedSkeletons] = []
    relayed: list[ReceivedSkeletons] = []
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    log.info("ROS domain %d, loopback only; logs in %s", domain_id, log_dir)
    # The player publishes images reliably (see demo_player); readers opt in with a QoS override, the
    # way a robot integrator would for a camera on a busy machine.
    reliable_images = ["-p", "qos_overrides./image.subscription.reliability:=reliable"]
    node_cmd = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"backend:={backend}",
                "-p", "max_input_age:=0.0", *reliable_images]
    if model_path:
        node_cmd += ["-p", f"model_path:={model_path}"]
    processes = {"lifter": popen_ros(node_cmd, domain_id, log_dir)}
    if relay:
        processes["relay"] = popen_ros(["python", "-m", "lbi_ros.ros.tools.relay_node", "--ros-args", "-r",
                                        "skeletons_3d:=relay/skeletons_3d", *reliable_images],
                                       domain_id, log_dir)
    rclpy.init()
    recorder = rclpy.create_node("lbi_demo_recorder")
    mcap = None
    stamps_path = out / "stamps.json"
    try:
        recorder.create_subscription(Skeleton3DArray, "skeletons_3d", lambda m: received.append(_skeletons(m)),
                                     reliable)
        recorder.create_subscription(Skeleton3DArray, "relay/skeletons_3d", lambda m: relayed.append(_skeletons(m)),
                                     reliable)
        recorder.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        mcap = McapRecorder(recorder, out / "demo.mcap", {
            "image": (Image, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)), "camera_info": (CameraInfo, qos_profile_sensor_data),
            "keypoints_2d": (Person2DArray, reliable), "skeletons_3d": (Skeleton3DArray, reliable),
            "markers": (MarkerArray, reliable), "/tf": (TFMessage, 100), "/diagnostics": (DiagnosticArray, 10)})
        deadline = time.monotonic() + startup_timeout_s
        wanted = ["skeletons_3d"] + (["relay/skeletons_3d"] if relay else [])
        while any(recorder.count_publishers(t) == 0 for t in wanted):
            for name, proc in processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} node exited at start-up (code {proc.returncode}); see {log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lifter node did not come up within {startup_timeout_s} s")
            rclpy.spin_once(recorder, timeout_sec=0.1)
        player = processes["player"] = popen_ros(
            ["python", "-m", "lbi_ros.ros.tools.demo_player", str(stamps_path), "--rate", str(rate_hz),
             "--duration", str(duration_s), "--people", str(people), "--seed", str(seed), "--body", body,
             "--min-subscribers", str(len(processes) + 1)],  # lifter (+ relay) + this recorder
            domain_id, log_dir)
        while player.poll() is None:
            rclpy.spin_once(recorder, timeout_sec=0.05)
        drain_until = time.monotonic() + 3.0  # outputs of the last frames and one more diagnostics message
        while time.monotonic() < drain_until:
            rclpy.spin_once(recorder, timeout_sec=0.05)
        if player.returncode != 0:
            raise RuntimeError(f"the demo player failed (code {player.returncode}); see {log_dir}")
    finally:
        for proc in processes.values():
            _stop(proc)
        if mcap is not None:
            mcap.close()
        recorder.destroy_node()
        rclpy.try_shutdown()
    played = json.loads(stamps_path.read_text())
    stamps = {int(k): v for k, v in played["stamps"].items()}
    scene = DemoScene(people, seed=seed, body=body)
    frames = [scene.frame(i) for i in sorted(stamps)]
    metrics, matched = score(frames, stamps, received, relayed, rate_hz)
    # The picture shows the frame nearest the middle of the run among those with the most people lifted.
    lifted_per_frame: dict[int, int] = {}
    for index, *_ in matched:
        lifted_per_frame[index] = lifted_per_frame.get(index, 0) + 1
    most = max(lifted_per_frame.values(), default=0)
    centre = frames[len(frames) // 2].index
    shown = min((i for i, n in lifted_per_frame.items() if n == most), key=lambda i: abs(i - centre), default=centre)
    middle = next(f for f in frames if f.index == shown)
    predicted = {pid: pred for index, pid, pred, _ in matched if index == middle.index}
    picture = draw(middle, predicted, metrics, out / "demo.png", backend=diagnostics.get("backend", backend))
    sync = {k: int(diagnostics.get(f"sync_{k}", -1)) for k in ("matched_exact", "matched_approx",
                                                                "dropped_images", "dropped_keypoints")}
    summary = dict(metrics.to_dict(), sync_matched=sync["matched_exact"] + sync["matched_approx"],
                   sync_dropped=sync["dropped_images"] + sync["dropped_keypoints"],
                   backend=diagnostics.get("backend", backend), people=people, rate_hz=rate_hz, body=body)
    report = out / "demo.json"
    report.write_text(json.dumps({"summary": summary, "node_diagnostics": diagnostics,
                                  "recorded_messages": mcap.counts if mcap else {}}, indent=2))
    return DemoResult(metrics, dict(diagnostics), picture, report, out / "demo.mcap")

"""The one-command demo: a real ROS 2 graph (player -> lifter node -> recorder) on loopback.

Three processes talk over Fast DDS in a domain reserved for this run: the demo player (camera and 2D
detector stand-in, :mod:`lbi_ros.ros.demo_player`), the lifter node (:mod:`lbi_ros.ros.lift_node`,
default weights unless told otherwise) and this process, which records the node's skeletons and
diagnostics, scores them against the scene's ground truth and draws the demo picture.
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
from lbi_ros.demo.scene import build_scene
from lbi_ros.ros.environment import apply_ros_environment, popen_ros, reserve_domain_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    metrics: DemoMetrics
    node_diagnostics: dict[str, str]
    picture: Path
    report: Path


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_demo(out_dir: str | Path, frames: int | None = None, rate_hz: float = 15.0, model_path: str = "",
             backend: str = "auto", seed: int = 0, startup_timeout_s: float = 120.0) -> DemoResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reservation = reserve_domain_id()
    log_dir = out / "ros-log"
    apply_ros_environment(reservation.domain_id, log_dir)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from lbi_ros.msg import Skeleton3DArray

    received: list[ReceivedSkeletons] = []
    diagnostics: dict[str, str] = {}

    def on_skeletons(msg: Skeleton3DArray) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        people = {s.id: np.array([[p.x, p.y, p.z] for p in s.positions]) for s in msg.skeletons}
        received.append(ReceivedSkeletons(stamp, time.time_ns(), people))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    log.info("ROS domain %d, loopback only; logs in %s", reservation.domain_id, log_dir)
    node_cmd = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"backend:={backend}",
                "-p", "max_input_age:=0.0"]
    if model_path:
        node_cmd += ["-p", f"model_path:={model_path}"]
    lifter = popen_ros(node_cmd, reservation.domain_id, log_dir)
    player = None
    rclpy.init()
    recorder = rclpy.create_node("lbi_demo_recorder")
    try:
        recorder.create_subscription(Skeleton3DArray, "skeletons_3d", on_skeletons,
                                     QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        recorder.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        deadline = time.monotonic() + startup_timeout_s
        while recorder.count_publishers("skeletons_3d") == 0:
            if lifter.poll() is not None:
                raise RuntimeError(f"the lifter node exited at start-up (code {lifter.returncode}); see {log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lifter node did not come up within {startup_timeout_s} s")
            rclpy.spin_once(recorder, timeout_sec=0.1)
        stamps_path = out / "stamps.json"
        player_cmd = ["python", "-m", "lbi_ros.ros.demo_player", str(stamps_path), "--rate", str(rate_hz),
                      "--seed", str(seed)]
        if frames:
            player_cmd += ["--frames", str(frames)]
        player = popen_ros(player_cmd, reservation.domain_id, log_dir)
        while player.poll() is None:
            rclpy.spin_once(recorder, timeout_sec=0.05)
        drain_until = time.monotonic() + 3.0  # outputs of the last frames and one more diagnostics message
        while time.monotonic() < drain_until:
            rclpy.spin_once(recorder, timeout_sec=0.05)
        if player.returncode != 0:
            raise RuntimeError(f"the demo player failed (code {player.returncode}); see {log_dir}")
    finally:
        if player is not None:
            _stop(player)
        _stop(lifter)
        recorder.destroy_node()
        rclpy.try_shutdown()
        reservation.release()
    stamps = {int(k): v for k, v in json.loads(stamps_path.read_text())["stamps"].items()}
    scene_frames = build_scene(frames, seed=seed)
    metrics, matched = score(scene_frames, stamps, received)
    middle = scene_frames[len(scene_frames) // 2]
    predicted = {pid: pred for index, pid, pred, _ in matched if index == middle.index}
    picture = draw(middle, predicted, metrics, out / "demo.png", backend=diagnostics.get("backend", backend))
    report = out / "demo.json"
    report.write_text(json.dumps({"metrics": metrics.to_dict(), "node_diagnostics": diagnostics}, indent=2))
    return DemoResult(metrics, dict(diagnostics), picture, report)

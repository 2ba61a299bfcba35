"""The one-command demo: a real ROS 2 graph (player -> lifter node [+ relay] -> recorder) on loopback.

Processes talk over Fast DDS in a domain reserved for this run: the demo player (camera and 2D
detector stand-in, :mod:`lbi_ros.ros.tools.demo_player`), the lifter node (:mod:`lbi_ros.ros.lift_node`,
default weights unless told otherwise), optionally a bare relay node on the same inputs (the
baseline of node-added latency, :mod:`lbi_ros.ros.tools.relay_node`), and this process, which records
every topic to MCAP, scores the skeletons against the scene's ground truth and draws the picture.

The node runs as users get it: default parameters and QoS (the player publishes images and CameraInfo
best effort with the sensor-data profile, as camera drivers do); the only deviations are the ones the
caller asks for (``backend`` other than auto, ``model_path``, ``precision`` other than fp32), listed in
``summary.node_deviations``.
Every process gets the project's Fast DDS profile (``config/fastdds_large_frames.xml``, through
:mod:`lbi_ros.ros.environment`). All processes share the machine's cores.

Camera-only (``keypoints="builtin"``): once the graph has stopped, the 2D-only lifter and BlazePose world
landmarks are scored on the frames and people the node's skeletons were scored on
(:mod:`lbi_ros.demo.peers`; ``summary.peer_mpjpe_mm``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbi_ros.benchmarks.detector_eval import Detection2DMetrics
from lbi_ros.demo.peers import PeerComparison, compare_peers
from lbi_ros.demo.report import (
    DemoMetrics,
    ReceivedPeople2D,
    ReceivedSkeletons,
    draw,
    score,
    score_detections,
)
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
    detection: Detection2DMetrics | None = None  # keypoints="builtin": the node's 2D people vs the truth
    peers: PeerComparison | None = None  # keypoints="builtin": LBI, 2D-only lifter, BlazePose world, same people


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _skeletons(msg, info) -> ReceivedSkeletons:
    """``info``: rclpy's MessageInfo. Its ``received_timestamp`` is when Fast DDS put the sample in this
    process's reader (wall clock, ns, as the image stamp), not when this single-threaded recorder got round
    to the callback: the recorder also writes the MCAP file, and its own busy moments must not be measured
    as the lifter's or the relay's latency."""
    from lbi_ros.ros.messages import stamp_ns

    people = {s.id: np.array([[p.x, p.y, p.z] for p in s.positions]) for s in msg.skeletons}
    return ReceivedSkeletons(stamp_ns(msg.header), int(info["received_timestamp"]), people)


def node_deviations(backend: str, model_path: str, precision: str = "fp32") -> list[str]:
    """The ``name:=value`` parameters the demo gives the node that differ from its defaults (config/lift.yaml)."""
    return ([f"backend:={backend}"] if backend != "auto" else []) + (
        [f"model_path:={model_path}"] if model_path else []) + (
        [f"precision:={precision}"] if precision != "fp32" else [])


def _node_latency(diagnostics: dict[str, str]) -> dict[str, float]:
    """The node's own image-callback -> skeletons-published time, measured per frame by the node and reported
    (median, p99 over its last 300 frames) in /diagnostics as ``latency_receive_to_publish_ms_*``."""
    def value(key: str) -> float:
        return float(diagnostics.get(key, "nan"))

    return {"node_receive_to_publish_p50_ms": value("latency_receive_to_publish_ms_median"),
            "node_receive_to_publish_p99_ms": value("latency_receive_to_publish_ms_p99")}


def _delivery(published: int, diagnostics: dict[str, str], recorded: dict[str, int]) -> dict[str, int]:
    """Messages the player sent (warm-up included) against what the node and the recorder received."""
    def count(key: str) -> int:
        return int(diagnostics.get(f"count_{key}", 0))

    return {"frames_sent": published, "images_received_by_node": count("images_received"),
            "camera_info_received_by_node": count("camera_info_received"),
            "camera_info_lost_in_dds": count("dds_lost_camera_info"), "images_lost_in_dds": count("dds_lost_image"),
            "camera_info_recorded": recorded.get("camera_info", 0), "images_recorded": recorded.get("image", 0)}


def _people_2d(msg) -> ReceivedPeople2D:
    from lbi_ros.ros.messages import stamp_ns

    stamp = stamp_ns(msg.header)
    people = {p.id: np.column_stack([p.u, p.v, p.confidence]).astype(np.float64) for p in msg.people}
    return ReceivedPeople2D(stamp, msg.skeleton, people)


def _with_detections(frame, stamp: int | None, detected: list[ReceivedPeople2D]):
    """``frame`` with its 2D keypoints replaced by the node's detections at ``stamp`` (mapped to H36M-17)."""
    import dataclasses

    from lbi_ros.skeleton import map_to_h36m

    found = next((d for d in detected if d.stamp_ns == stamp), None)
    people = [map_to_h36m(kp, found.joint_set) for kp in found.people.values()] if found else []
    return dataclasses.replace(frame, keypoints_px=np.stack(people) if people else np.zeros((0, 17, 3)))


def run_demo(out_dir: str | Path, duration_s: float = 20.0, rate_hz: float = 30.0, people: int = 2,
             model_path: str = "", backend: str = "auto", seed: int = 0, relay: bool = True, precision: str = "fp32",
             startup_timeout_s: float = 120.0, body: str = "capsule", keypoints: str = "truth") -> DemoResult:
    """Run the graph in a ROS domain reserved for it; this process's environment is restored after.

    ``keypoints="builtin"``: the player publishes no 2D keypoints (camera only), the node runs with
    ``keypoints_source:=builtin``, and its 2D people are scored against the rendered truth (people are
    matched by 2D proximity, :mod:`lbi_ros.benchmarks.detector_eval`); there is no relay baseline then
    (it pairs images with the camera's keypoints, which do not exist in this mode)."""
    if keypoints not in ("truth", "builtin"):
        raise ValueError(f"keypoints must be 'truth' or 'builtin', got {keypoints!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with reserve_domain_id() as reservation, ros_environment_applied(reservation.domain_id, out / "ros-log"):
        return _run_demo(out, reservation.domain_id, duration_s, rate_hz, people, model_path, backend, seed,
                         relay and keypoints == "truth", startup_timeout_s, body, keypoints, precision)


def _run_demo(out: Path, domain_id: int, duration_s: float, rate_hz: float, people: int, model_path: str,
              backend: str, seed: int, relay: bool, startup_timeout_s: float, body: str,
              keypoints: str = "truth", precision: str = "fp32") -> DemoResult:
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
    detected: list[ReceivedPeople2D] = []
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    log.info("ROS domain %d, loopback only; logs in %s", domain_id, log_dir)
    deviations = node_deviations(backend, model_path, precision) + (
        ["keypoints_source:=builtin"] if keypoints == "builtin" else [])
    node_cmd = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args"]
    for deviation in deviations:
        node_cmd += ["-p", deviation]
    processes = {"lifter": popen_ros(node_cmd, domain_id, log_dir)}
    if relay:
        processes["relay"] = popen_ros(["python", "-m", "lbi_ros.ros.tools.relay_node", "--ros-args", "-r",
                                        "skeletons_3d:=relay/skeletons_3d"], domain_id, log_dir)
    rclpy.init()
    recorder = rclpy.create_node("lbi_demo_recorder")
    mcap = None
    stamps_path = out / "stamps.json"
    try:
        recorder.create_subscription(Skeleton3DArray, "skeletons_3d",
                                     lambda m, info: received.append(_skeletons(m, info)), reliable)
        recorder.create_subscription(Skeleton3DArray, "relay/skeletons_3d",
                                     lambda m, info: relayed.append(_skeletons(m, info)), reliable)
        recorder.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        if keypoints == "builtin":  # the node's own 2D people, scored against the truth
            recorder.create_subscription(Person2DArray, "keypoints_2d", lambda m: detected.append(_people_2d(m)),
                                         reliable)
        mcap = McapRecorder(recorder, out / "demo.mcap", {
            "image": (Image, qos_profile_sensor_data), "camera_info": (CameraInfo, qos_profile_sensor_data),
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
             "--keypoints", keypoints, "--min-subscribers", str(len(processes) + 1)],  # lifter (+ relay) + recorder
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
    distinct_poses = len({scene.pose_index(i) for i in stamps})
    frames = [scene.frame(i) for i in sorted(stamps)]
    detection = None
    if keypoints == "builtin":  # skeletons carry detector ids: relabel them with the truth person they found
        detection, received = score_detections(frames, stamps, detected, received)
    metrics, matched = score(frames, stamps, received, relayed, rate_hz)
    peers = None
    if keypoints == "builtin":  # after the graph: the 2D-only lifter and BlazePose on the same frames and people
        peers = compare_peers(frames, stamps, detected, matched, backend=backend)
    # The picture shows the frame nearest the middle of the run among those with the most people lifted.
    lifted_per_frame: dict[int, int] = {}
    for index, *_ in matched:
        lifted_per_frame[index] = lifted_per_frame.get(index, 0) + 1
    most = max(lifted_per_frame.values(), default=0)
    centre = frames[len(frames) // 2].index
    shown = min((i for i, n in lifted_per_frame.items() if n == most), key=lambda i: abs(i - centre), default=centre)
    middle = next(f for f in frames if f.index == shown)
    if keypoints == "builtin":  # the picture shows the 2D input the node found, not the camera's truth
        middle = _with_detections(middle, stamps.get(middle.index), detected)
    predicted = {pid: pred for index, pid, pred, _ in matched if index == middle.index}
    picture = draw(middle, predicted, metrics, out / "demo.png", backend=diagnostics.get("backend", backend))
    sync = {k: int(diagnostics.get(f"sync_{k}", -1)) for k in ("matched_exact", "matched_approx",
                                                                "dropped_images", "dropped_keypoints")}
    summary = dict(metrics.to_dict(), sync_matched=sync["matched_exact"] + sync["matched_approx"],
                   sync_dropped=sync["dropped_images"] + sync["dropped_keypoints"],
                   backend=diagnostics.get("backend", backend), people=people, rate_hz=rate_hz, body=body,
                   **_node_latency(diagnostics), distinct_poses=distinct_poses, playback="ping-pong",
                   take_length_frames=scene.length, node_deviations=deviations,
                   **_delivery(played["published"], diagnostics, mcap.counts if mcap else {}),
                   cpu_cores=os.cpu_count(), processes_sharing_cores=len(processes) + 1,  # + this recorder
                   keypoints=keypoints, **{f"detection_{k}": v for k, v in (detection.to_dict() if detection else {}).items()})
    if peers is not None:
        summary["peer_mpjpe_mm"] = peers.to_dict()
    report = out / "demo.json"
    report.write_text(json.dumps({"summary": summary, "node_diagnostics": diagnostics,
                                  "recorded_messages": mcap.counts if mcap else {}}, indent=2))
    return DemoResult(metrics, dict(diagnostics), picture, report, out / "demo.mcap", detection, peers)

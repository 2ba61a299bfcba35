"""``lbi bench node delivery``: do a camera's frames reach the node, with Fast DDS defaults, the profile, compressed?

One 640x480 camera (the demo player: rendered scene, CameraInfo, 2D keypoints, each frame stamped at
publication) publishes images and CameraInfo best effort with the stock sensor-data QoS, as camera
drivers do, to the lifter node running with default parameters; a consumer in this process counts the
skeletons that come back. Three cases, each at every ``--rates`` value:

* ``defaults``: no Fast DDS profile anywhere (512 KB shared-memory segment; a 900 KB frame does not fit);
* ``profile``: every process with ``config/fastdds_large_frames.xml`` (16 MB segment);
* ``compressed``: no profile, the camera publishes ``CompressedImage`` (jpeg, quality 95) on
  ``image/compressed`` and the node runs with ``image_transport:=compressed``.

Reported per run: frames answered / frames sent (scored frames, after a warm-up second), and from the
node's counters over the whole run: images and CameraInfo received / published, and samples DDS reports
lost. All processes share this machine's cores, so a busy machine shows up as losses too.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CASES: dict[str, tuple[str, bool]] = {  # name -> (image transport, large-frames profile)
    "defaults": ("raw", False),
    "profile": ("raw", True),
    "compressed": ("compressed", False),
}


@dataclass(frozen=True)
class DeliveryRun:
    case: str
    rate_hz: float
    frames_sent: int  # scored frames (after the warm-up)
    frames_answered: int  # of those, frames whose skeletons came back
    published: int  # every frame the camera published, warm-up included
    images_received: int  # by the node, whole run
    camera_info_received: int
    dds_lost_images: int
    dds_lost_camera_info: int
    frames_dropped_busy: int

    @property
    def answered_fraction(self) -> float:
        return self.frames_answered / self.frames_sent if self.frames_sent else float("nan")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_case(tmp: Path, domain_id: int, case: str, rate_hz: float, seconds: float, model: str | None,
                 backend: str) -> DeliveryRun:
    """Start the node and the camera for one case, count what comes back; both processes are stopped after."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from lbi_ros.msg import Skeleton3DArray
    from lbi_ros.ros.environment import popen_ros
    from lbi_ros.ros.messages import stamp_ns

    transport, large_frames = CASES[case]
    log_dir = tmp / "ros-log"
    node_cmd = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"image_transport:={transport}"]
    node_cmd += (["-p", f"model_path:={model}"] if model else []) + (
        ["-p", f"backend:={backend}"] if backend != "auto" else [])
    answered: set[int] = set()
    counters: dict[str, str] = {}

    def on_skeletons(msg) -> None:
        answered.add(stamp_ns(msg.header))

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                counters.clear()
                counters.update({kv.key: kv.value for kv in status.values})

    context = Context()
    rclpy.init(context=context)
    consumer = rclpy.create_node("lbi_delivery_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(consumer)
    consumer.create_subscription(Skeleton3DArray, "skeletons_3d", on_skeletons,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    consumer.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    stamps_path = tmp / f"stamps_{case}_{rate_hz:g}.json"
    with open(tmp / f"node_{case}_{rate_hz:g}.log", "w") as node_log:
        node = popen_ros(node_cmd, domain_id, log_dir, large_frames=large_frames, stdout=node_log,
                         stderr=subprocess.STDOUT)
    player = None
    try:
        deadline = time.monotonic() + 300
        while not counters or consumer.count_publishers("skeletons_3d") == 0:
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up (see {tmp})")
            executor.spin_once(timeout_sec=0.1)
        player = popen_ros(["python", "-m", "lbi_ros.ros.tools.demo_player", str(stamps_path), "--rate", str(rate_hz),
                            "--duration", str(seconds), "--warmup", "1.0", "--image-transport", transport,
                            "--min-subscribers", "1"], domain_id, log_dir, large_frames=large_frames)
        while player.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        if player.returncode != 0:
            raise RuntimeError(f"the camera (demo player) failed with code {player.returncode}")
        drain_until = time.monotonic() + 3.0  # the last outputs and a diagnostics message after them
        while time.monotonic() < drain_until:
            executor.spin_once(timeout_sec=0.05)
    finally:
        for proc in (player, node):
            if proc is not None:
                _stop(proc)
        executor.shutdown()
        consumer.destroy_node()
        rclpy.try_shutdown(context=context)
    played = json.loads(stamps_path.read_text())
    sent = set(played["stamps"].values())

    def count(key: str) -> int:
        return int(counters.get(f"count_{key}", 0))

    return DeliveryRun(case, rate_hz, len(sent), len(sent & answered), played["published"],
                       count("images_received"), count("camera_info_received"), count("dds_lost_image"),
                       count("dds_lost_camera_info"), count("frames_dropped_busy"))


def measure(rates: tuple[float, ...] = (10.0, 30.0), seconds: float = 10.0, cases: tuple[str, ...] = tuple(CASES),
            model: str | None = None, backend: str = "auto") -> list[DeliveryRun]:
    from lbi_ros.ros.environment import reserve_domain_id, ros_environment_applied

    runs = []
    with tempfile.TemporaryDirectory(prefix="lbi_delivery_") as tmp, reserve_domain_id() as reservation, \
            ros_environment_applied(reservation.domain_id, Path(tmp) / "ros-log"):
        for rate in rates:
            for case in cases:
                runs.append(measure_case(Path(tmp), reservation.domain_id, case, rate, seconds, model, backend))
                print_run(runs[-1])
    return runs


def print_run(r: DeliveryRun) -> None:
    print(f"  {r.case:<11} {r.rate_hz:>4g} Hz  answered {r.frames_answered:>4}/{r.frames_sent:<4} "
          f"({100 * r.answered_fraction:5.1f} %)  node got images {r.images_received}/{r.published}, "
          f"CameraInfo {r.camera_info_received}/{r.published}; DDS lost {r.dds_lost_images} images, "
          f"{r.dds_lost_camera_info} CameraInfo; dropped busy {r.frames_dropped_busy}", flush=True)


def markdown_table(runs: list[DeliveryRun]) -> str:
    lines = ["| case | rate | frames answered / sent | images reaching the node | CameraInfo reaching the node "
             "| lost in DDS (images, CameraInfo) | replaced while the node was busy |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.case} | {r.rate_hz:g} Hz | {r.frames_answered}/{r.frames_sent} "
                     f"({100 * r.answered_fraction:.1f} %) | {r.images_received}/{r.published} | "
                     f"{r.camera_info_received}/{r.published} | {r.dds_lost_images}, {r.dds_lost_camera_info} | "
                     f"{r.frames_dropped_busy} |")
    return "\n".join(lines)


def run(args) -> int:
    """``lbi bench node delivery [--rates 10,30] [--seconds 10] [--json PATH]``."""
    rates = tuple(float(r) for r in (args.rates or "10,30").split(","))
    print(f"lbi bench node delivery: one 640x480 camera, sensor-data QoS (best effort), {args.seconds or 10:g} s "
          f"per run; cases {list(CASES)}")
    runs = measure(rates, args.seconds or 10.0, model=args.model, backend=args.backend)
    print(markdown_table(runs))
    if args.json:
        rows = [dict(asdict(r), answered_fraction=round(r.answered_fraction, 4)) for r in runs]
        text = json.dumps(rows, indent=2)
        print(text) if args.json == "-" else Path(args.json).write_text(text + "\n")
    return 0

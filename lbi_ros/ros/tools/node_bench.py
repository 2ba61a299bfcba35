"""``lbi bench node {overload,soak}``: the lifter node as a process, fed over DDS, measured from outside.

One run starts the real node (``python -m lbi_ros.ros.lift_node``, default parameters, on a loopback-only
domain of its own) and, in this process, a camera + 2D-detector stand-in that publishes Image,
CameraInfo and Person2DArray with the same stamp at ``--rate`` Hz with ``--people`` people, and a
consumer of ``skeletons_3d`` and ``/diagnostics``. It reports:

* latency: output receive time - input stamp (what a consumer sees), median / p90 / p99 / max, after warm-up;
* drops: 1 - outputs / frames published, split by cause from the node's counters (``frames_dropped_busy``:
  replaced in the one-slot mailbox while the worker was busy; sync and stale drops; frames lost in DDS);
* queue sizes: ``sync_pending_images`` / ``sync_pending_keypoints`` over time (must stay bounded);
* the node process over time: RSS (growth after warm-up), open fds (``/proc/<pid>/fd``), threads;
* output gaps: the longest run of input frames without an output, and how many runs exceed 2 frames.

``overload`` (default 120 Hz x 6 people for 30 s) drives the node far above its capacity on a small CPU;
``soak`` (default 30 Hz x 3 people for 30 min) checks that nothing grows. The model is ``--model`` or
the shipped default weights; without those, an untrained LBI network (same compute) is written to a
temporary checkpoint. The publisher and the node get the project's Fast DDS profile
(``config/fastdds_large_frames.xml``, whose shared-memory segment holds the frames; ``--default-transport``
to leave both at Fast DDS's 512 KB, where larger best-effort images are lost: a camera-driver setting).
``delivery`` (:mod:`lbi_ros.ros.tools.delivery_bench`) counts frames answered / sent with Fast DDS
defaults, with the profile and with compressed images, at ``--rates`` (default 10,30).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lbi_ros.skeleton import STANDING_POSE_M

MODES = {"overload": {"rate": 120.0, "people": 6, "seconds": 30.0},
         "soak": {"rate": 30.0, "people": 3, "seconds": 30 * 60.0}}
STANDING = STANDING_POSE_M


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=[*sorted(MODES), "delivery"],
                        help="overload: far above capacity; soak: a long steady run; delivery: frames answered / "
                             "sent with Fast DDS defaults, the large-frames profile and compressed images")
    parser.add_argument("--rates", help="delivery: comma-separated camera rates, Hz (default 10,30)")
    parser.add_argument("--rate", type=float, help="input frames per second (overload 120, soak 30)")
    parser.add_argument("--people", type=int, help="people per frame (overload 6, soak 3)")
    parser.add_argument("--seconds", type=float, help="duration (overload 30)")
    parser.add_argument("--minutes", type=float, help="duration in minutes (soak 30)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the statistics (default: 20%%, <= 60 s)")
    parser.add_argument("--model", help="checkpoint or ONNX file, or default / baseline-2d "
                        "(default: shipped weights, else untrained LBI)")
    parser.add_argument("--backend", default="auto", help="node parameter 'backend'")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--default-transport", action="store_true",
                        help="publish with Fast DDS's default transports (512 KB shared-memory segment)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write the report as JSON ('-': stdout)")


def run(args: argparse.Namespace) -> int:
    if args.mode == "delivery":
        from lbi_ros.ros.tools import delivery_bench

        return delivery_bench.run(args)
    defaults = MODES[args.mode]
    rate = args.rate or defaults["rate"]
    people = args.people or defaults["people"]
    seconds = args.minutes * 60 if args.minutes else (args.seconds or defaults["seconds"])
    warmup = args.warmup if args.warmup is not None else min(60.0, 0.2 * seconds)
    with tempfile.TemporaryDirectory(prefix="lbi_node_bench_") as tmp:
        report = measure(Path(tmp), args.mode, rate, people, seconds, warmup, args.model, args.backend,
                         (args.width, args.height), not args.default_transport)
    print_report(report)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["node_alive_at_end"] else 1


def model_path(tmp: Path, model: str | None) -> Path:
    from lbi_ros.weights import resolve_checkpoint

    if model:
        return resolve_checkpoint(model)  # a file, or a shipped name (default, baseline-2d)
    try:
        return resolve_checkpoint("default")
    except FileNotFoundError:
        pass
    import torch

    from lbi_ros.checkpoint import save_checkpoint
    from lbi_ros.model import build_model
    from lbi_ros.model.config import ModelConfig

    torch.manual_seed(0)
    config = ModelConfig()
    return save_checkpoint(tmp / "untrained_lbi.safetensors", build_model(config), config)


def measure(tmp: Path, mode: str, rate: float, people: int, seconds: float, warmup: float, model: str | None,
            backend: str, size: tuple[int, int], large_shm: bool) -> dict[str, Any]:
    from lbi_ros.ros.environment import apply_ros_environment, popen_ros, reserve_domain_id

    path = model_path(tmp, model)
    domain = reserve_domain_id()
    env = apply_ros_environment(domain.domain_id, tmp / "ros-log")
    node_env = dict(env)
    if not large_shm:  # Fast DDS defaults in this process (the camera) and in the node
        from lbi_ros.ros.environment import PROFILE_VARIABLES

        for key in PROFILE_VARIABLES:
            os.environ.pop(key, None)
    elif size[0] * size[1] * 3 > 2 << 20:  # frames beyond the shipped 16 MB segment's 8: a bigger one
        from lbi_ros.ros.dds_shm import write_large_frames_profile

        profile = write_large_frames_profile(tmp / "large_frames.xml", 8 * size[0] * size[1] * 3)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = node_env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    log_path = tmp / "node.log"
    with open(log_path, "w") as log:
        node = popen_ros(["python", "-m", "lbi_ros.ros.lift_node", "--ros-args", "-p", f"model_path:={path}",
                          "-p", f"backend:={backend}"], domain.domain_id, tmp / "ros-log", env=node_env,
                         large_frames=large_shm, stdout=log, stderr=subprocess.STDOUT)
    try:
        bench = Bench(node, rate, people, size)
        try:
            if not bench.wait_ready(timeout=600):
                raise RuntimeError(f"the node did not come up; its log:\n{log_path.read_text()[-3000:]}")
            bench.run(seconds)
            result = bench.report(warmup)
        finally:
            bench.close()
    finally:
        alive = node.poll() is None
        node.send_signal(signal.SIGINT)
        try:
            code = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            code = node.wait()
        domain.release()
    return {"mode": mode, "rate_hz": rate, "people": people, "seconds": seconds, "warmup_s": warmup,
            "image": f"{size[0]}x{size[1]} rgb8", "model": str(path), "backend_param": backend,
            "publisher_large_shm": large_shm, **result, "node_alive_at_end": alive, "node_exit_code": code}


class Bench:
    """Publisher thread + consumer callbacks + /proc sampler around one node process."""

    def __init__(self, node: subprocess.Popen, rate: float, people: int, size: tuple[int, int]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from lbi_ros.msg import Person2D, Person2DArray, Skeleton3DArray

        self.proc, self.rate, self.people = node, rate, people
        rclpy.init()
        self.node = rclpy.create_node("lbi_node_bench")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.pub_keypoints = self.node.create_publisher(Person2DArray, "keypoints_2d", reliable)
        self.node.create_subscription(Skeleton3DArray, "skeletons_3d", self._on_output, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        width, height = size
        f = 0.9 * width
        self.info = CameraInfo(width=width, height=height, k=[f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0])
        self.image = Image(width=width, height=height, encoding="rgb8", step=3 * width)
        self.image.data = np.random.default_rng(0).integers(0, 255, 3 * width * height, dtype=np.uint8).tobytes()
        self.keypoints = Person2DArray(skeleton="h36m17")
        for i in range(people):
            root = np.array([-1.0 + 2.0 * (i + 0.5) / people, 0.0, 4.0 + 0.5 * (i % 3)])
            points = STANDING + root
            u = f * points[:, 0] / points[:, 2] + width / 2
            v = f * points[:, 1] / points[:, 2] + height / 2
            self.keypoints.people.append(Person2D(id=f"p{i}", score=0.9, u=u.tolist(), v=v.tolist(),
                                                  confidence=[0.9] * 17))
        self.published: list[int] = []  # stamps
        self.outputs: list[tuple[int, int, int]] = []  # (receive ns, stamp ns, people)
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.samples: list[dict[str, float]] = []
        self.publisher_late = 0
        self._stop = threading.Event()

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()

    def _on_output(self, msg, info) -> None:
        """Timed at DDS reception (rclpy's MessageInfo, wall clock like the stamp), not when this process's
        executor, sharing the GIL with the publishing thread, reaches the callback."""
        from lbi_ros.ros.messages import stamp_ns

        self.outputs.append((int(info["received_timestamp"]), stamp_ns(msg.header), len(msg.skeletons)))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.spin(0.2)
            if self.diagnostics and self.pub_keypoints.get_subscription_count() and \
                    self.pub_image.get_subscription_count():
                self.spin(1.0)
                return True
        return False

    def _publish_loop(self, seconds: float) -> None:
        period = 1.0 / self.rate
        start = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            due = start + i * period
            if due - start >= seconds:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:  # fell a frame behind: a camera does not burst to catch up
                self.publisher_late += 1
                i = int((time.perf_counter() - start) / period) + 1
                continue
            stamp = self.node.get_clock().now().to_msg()
            for msg in (self.info, self.image, self.keypoints):
                msg.header.stamp = stamp
                msg.header.frame_id = "camera_optical"
            self.pub_info.publish(self.info)
            self.pub_image.publish(self.image)
            self.pub_keypoints.publish(self.keypoints)
            self.published.append(stamp.sec * 1_000_000_000 + stamp.nanosec)
            i += 1

    def _sample(self, t0: float) -> None:
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pending = self.diagnostics[-1][1] if self.diagnostics else {}
        self.samples.append({"t_s": round(time.monotonic() - t0, 2), "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
                             "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(fields["Threads"]),
                             "sync_pending_images": int(pending.get("sync_pending_images", 0)),
                             "sync_pending_keypoints": int(pending.get("sync_pending_keypoints", 0))})

    def run(self, seconds: float) -> None:
        sample_every = max(1.0, seconds / 300)
        publisher = threading.Thread(target=self._publish_loop, args=(seconds,), daemon=True)
        t0 = time.monotonic()
        self.t0 = t0
        publisher.start()
        next_sample = t0
        while publisher.is_alive() and self.proc.poll() is None:
            self.executor.spin_once(timeout_sec=0.01)
            if time.monotonic() >= next_sample:
                self._sample(t0)
                next_sample += sample_every
        self.spin(3.0)  # drain: the last outputs and one more diagnostics message
        if self.proc.poll() is None:
            self._sample(t0)

    def _accounting(self, counters: dict[str, str]) -> dict[str, int]:
        """Where every published frame went (whole run, from the node's final counters)."""
        c = {k: _counter(counters, k) for k in (
            "images_received", "keypoints_received", "dds_lost_image", "dds_lost_keypoints_2d", "sync_matched_exact",
            "sync_matched_approx", "sync_dropped_images", "sync_dropped_keypoints", "frames_dropped_busy",
            "frames_rejected", "bad_stale_input", "inference_failed", "frames_failed", "frames_published")}
        return {"published": len(self.published), "outputs_received": len(self.outputs),
                "images_not_received": len(self.published) - c["images_received"],
                "keypoints_not_received": len(self.published) - c["keypoints_received"], **c}

    def report(self, warmup: float) -> dict[str, Any]:
        start_ns = self.published[0] if self.published else 0
        warm_ns = start_ns + int(warmup * 1e9)
        published = [s for s in self.published if s >= warm_ns]
        outputs = [(r, s, n) for r, s, n in self.outputs if s >= warm_ns]
        latency_ms = np.array([(r - s) / 1e6 for r, s, _ in outputs]) if outputs else np.array([np.nan])
        counters = self.diagnostics[-1][1] if self.diagnostics else {}

        stamps = np.array(sorted({s for _, s, _ in outputs}), dtype=np.int64)
        period_ns = 1e9 / self.rate
        missing = np.round(np.diff(stamps) / period_ns).astype(int) - 1 if stamps.size > 1 else np.zeros(0, int)
        steady = [s for s in self.samples if s["t_s"] >= warmup] or self.samples
        rss = np.array([s["rss_mb"] for s in steady])
        head, tail = np.median(rss[:3]), np.median(rss[-3:])
        slope = float(np.polyfit([s["t_s"] for s in steady], rss, 1)[0] * 3600) if len(steady) > 2 else float("nan")
        duration_s = (published[-1] - published[0]) / 1e9 if len(published) > 1 else float("nan")
        return {
            "frames_published": len(published),
            "publish_rate_hz": round(len(published) / duration_s, 2) if duration_s == duration_s else None,
            "publisher_late_skips": self.publisher_late,
            "outputs": len(outputs),
            "output_rate_hz": round(len(outputs) / duration_s, 2) if duration_s == duration_s else None,
            "drop_rate": round(1 - len(outputs) / len(published), 4) if published else None,
            "accounting_whole_run": self._accounting(counters),
            "people_per_output_mean": round(float(np.mean([n for _, _, n in outputs])), 2) if outputs else None,
            "latency_ms": {"median": pct(latency_ms, 50), "p90": pct(latency_ms, 90), "p99": pct(latency_ms, 99),
                           "max": round(float(np.nanmax(latency_ms)), 1)},
            "node_stage_ms_median_p99": {k.removeprefix("latency_").removesuffix("_ms_median"):
                                         [float(v), float(counters.get(k.replace("median", "p99"), "nan"))]
                                         for k, v in counters.items() if k.endswith("_ms_median")},
            "max_missing_frames_between_outputs": int(missing.max()) if missing.size else None,
            "gaps_over_2_frames": int((missing > 2).sum()),
            "sync_pending_max": {"images": max((s["sync_pending_images"] for s in steady), default=0),
                                 "keypoints": max((s["sync_pending_keypoints"] for s in steady), default=0)},
            "rss_mb": {"after_warmup": round(float(head), 1), "end": round(float(tail), 1),
                       "growth_pct": round(float(100 * (tail - head) / head), 2), "slope_mb_per_h": round(slope, 1)},
            "fds": {"min": min(s["fds"] for s in steady), "max": max(s["fds"] for s in steady),
                    "end": steady[-1]["fds"]},
            "threads": {"min": min(s["threads"] for s in steady), "max": max(s["threads"] for s in steady)},
            "backend": counters.get("backend"),
            "samples": self.samples,
        }


def _counter(counters: dict[str, str], key: str) -> int:
    return int(counters.get(f"count_{key}", counters.get(key, 0)))


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.nanpercentile(values, q)), 1)


def print_report(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(f"lbi bench node {r['mode']}: {r['rate_hz']:g} Hz x {r['people']} people, {r['seconds']:g} s "
          f"(first {r['warmup_s']:g} s left out), {r['image']}, backend {r['backend']}, model {r['model']}")
    print(f"  published {r['frames_published']} frames ({r['publish_rate_hz']} Hz, {r['publisher_late_skips']} "
          f"publisher skips); outputs {r['outputs']} ({r['output_rate_hz']} Hz); drop rate {r['drop_rate']}")
    print(f"  where the frames went (whole run): {r['accounting_whole_run']}")
    print(f"  latency (stamp -> consumer) ms: median {lat['median']}  p90 {lat['p90']}  p99 {lat['p99']}  "
          f"max {lat['max']}")
    print("  node stages ms (median, p99): " + ", ".join(f"{k} {v[0]:.1f}/{v[1]:.1f}"
                                                       for k, v in sorted(r["node_stage_ms_median_p99"].items())))
    print(f"  output gaps: longest run of inputs without output {r['max_missing_frames_between_outputs']} frames; "
          f"{r['gaps_over_2_frames']} runs > 2 frames")
    print(f"  sync queues max {r['sync_pending_max']}; RSS {r['rss_mb']}; fds {r['fds']}; threads {r['threads']}")
    print(f"  node alive at end: {r['node_alive_at_end']}, exit code after SIGINT: {r['node_exit_code']}")
    sys.stdout.flush()

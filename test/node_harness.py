"""Shared harness for the node's bad-input and start-up tests: the oracle lifter, a DDS test client,
and helpers to start and stop a lifter process. Not a test module.

The oracle is a tiny ONNX graph with the lbi_ros I/O contract, run by the real ONNX Runtime backend, that
predicts the same standing pose for everyone. A good frame's 2D keypoints are that pose projected at a
known root, so the node's output must put the person exactly there: a check of the published values
that does not depend on trained weights (the shipped weights are exercised end to end by
test_node_io.py and test_demo.py).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.ros.environment import popen_ros
from lbi_ros.skeleton import STANDING_POSE_M

NODE = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args"]
# 320x240 rgb8 (230 KB) fits Fast DDS's default 512 KB shared-memory segment; larger best-effort samples
# go over UDP fragments and are lost under CPU load (see test_8k_image_is_lifted for large frames).
K = Intrinsics(250.0, 250.0, 160.0, 120.0)
SIZE = (320, 240)
ROOT = np.array([0.2, 0.1, 4.0])
STANDING = STANDING_POSE_M


# -- the oracle model -------------------------------------------------------------------------------------
def write_oracle_onnx(path: Path) -> Path:
    """An lbi_ros ONNX file (lift2d contract) whose output is STANDING for every person, whatever the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from lbi_ros.config import to_dict
    from lbi_ros.model.config import ModelConfig
    from lbi_ros.runtime.io_spec import METADATA_KEY_CONFIG, METADATA_KEY_SPEC, build_io_spec

    config = ModelConfig(kind="lift2d")
    spec = build_io_spec(config)

    def value(t):
        return helper.make_tensor_value_info(t.name, TensorProto.FLOAT, [d if isinstance(d, int) else "batch"
                                                                         for d in t.shape])

    constants = {"pose": STANDING[None], "logvar": np.full((1, 17), -6.0, np.float32),
                 "ax12": np.array([1, 2], np.int64), "ax1": np.array([1], np.int64), "zero": np.zeros(1, np.float32)}
    nodes = [  # zeros of shape (B, 1, 1) computed from every input, so the batch axis follows the inputs
        helper.make_node("ReduceSum", ["keypoints_crop", "ax12"], ["s1"], keepdims=1),
        helper.make_node("ReduceSum", ["keypoints_cam", "ax12"], ["s2"], keepdims=1),
        helper.make_node("ReduceSum", ["crop_cam", "ax1"], ["s3"], keepdims=1),
        helper.make_node("Unsqueeze", ["s3", "ax1"], ["s3u"]),
        helper.make_node("Add", ["s1", "s2"], ["s12"]), helper.make_node("Add", ["s12", "s3u"], ["s"]),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["z", "pose"], ["joints_3d"]),
        helper.make_node("Squeeze", ["z", "ax1"], ["z2"]),
        helper.make_node("Add", ["z2", "logvar"], ["joints_logvar"]),
    ]
    graph = helper.make_graph(nodes, "oracle", [value(t) for t in spec.inputs], [value(t) for t in spec.outputs],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    model.metadata_props.add(key=METADATA_KEY_SPEC, value=json.dumps(spec.to_dict()))
    model.metadata_props.add(key=METADATA_KEY_CONFIG, value=json.dumps(to_dict(config)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def keypoints_at(root, intrinsics: Intrinsics = K, distort: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> np.ndarray:
    """(17, 2) pixels of the oracle pose at ``root`` (optionally through a lens distortion)."""
    uv = project(STANDING.astype(np.float64) + np.asarray(root, np.float64), intrinsics)
    return distort(uv) if distort is not None else uv


# -- the DDS client ---------------------------------------------------------------------------------------
class Client:
    """Publishes inputs and records outputs and diagnostics, in its own rclpy Context."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, name: str = "lbi_bad_input_client",
                 namespace: str = "", lifter: str = "lbi_lifter") -> None:
        self.proc, self.log_path, self.namespace, self.lifter = proc, log_path, namespace, lifter
        self.outputs: dict = {}
        self._last_stamp = 0
        self._connect(name)

    def _connect(self, name: str) -> None:
        """A new participant: context, node, publishers and subscriptions (``lifter``: whose diagnostics)."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from lbi_ros.msg import Person2DArray, Skeleton3DArray

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, namespace=self.namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.counters: dict[str, str] = {}
        self.diagnostics_seen = 0
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Skeleton3DArray, "skeletons_3d", self._on_output, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.pub_image = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.pub_keypoints = self.node.create_publisher(Person2DArray, "keypoints_2d", reliable)

    def restart(self, name: str) -> None:
        """Leave the graph and come back as a new participant (a restarted driver and consumer)."""
        self.close()
        self._connect(name)

    def close(self) -> None:
        import rclpy

        if not self.context.ok():
            return
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def _on_output(self, msg) -> None:
        self.outputs[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = msg

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("lbi_ros") and status.hardware_id == self.lifter:
                self.counters = {kv.key: kv.value for kv in status.values}
                self.diagnostics_seen += 1

    # -- waiting --------------------------------------------------------------------------------------
    def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def count(self, key: str) -> int:
        """A counter from the latest diagnostics: ``count_<key>`` or a plain key (``sync_dropped_images``)."""
        return int(self.counters.get(f"count_{key}", self.counters.get(key, 0)))

    def fresh_count(self, key: str) -> int:
        seen = self.diagnostics_seen
        assert self.until(lambda: self.diagnostics_seen > seen + 1, 10), "diagnostics stopped"
        return self.count(key)

    def wait_ready(self) -> None:
        assert self.until(lambda: self.diagnostics_seen > 0 or self.proc.poll() is not None, 90), "no diagnostics"
        assert self.proc.poll() is None, self.log_tail()
        assert self.until(lambda: self.pub_keypoints.get_subscription_count() > 0
                          and self.pub_image.get_subscription_count() > 0, 30), "the node did not subscribe"
        self.camera_info()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    # -- sending ----------------------------------------------------------------------------------------
    def now_ns(self) -> int:
        """Now, but at least 40 ms after the last stamp sent: 2 x sync_slop, so no two frames can pair up."""
        stamp = max(time.time_ns(), self._last_stamp + 40_000_000)
        self._last_stamp = stamp
        return stamp

    def camera_info(self, frame_id: str = "cam", size=SIZE, k=None, d=(), model: str = "plumb_bob",
                    expect_bad: str | None = None) -> None:
        """Publish a CameraInfo until the node has counted it (best effort can lose one); ``expect_bad``:
        the counter a rejected CameraInfo must raise."""
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Header

        intr = K if k is None else None
        info = CameraInfo(header=Header(frame_id=frame_id), width=size[0], height=size[1], distortion_model=model)
        info.k = list(k) if k is not None else [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
        info.d = [float(x) for x in d]
        key = expect_bad or "camera_info_received"
        for _ in range(5):
            before = self.fresh_count(key)
            info.header.stamp.sec, info.header.stamp.nanosec = divmod(self.now_ns(), 1_000_000_000)
            self.pub_info.publish(info)
            if self.until(lambda before=before: self.count(key) > before, 3):
                return
        raise AssertionError(f"the node never counted the CameraInfo for {frame_id!r}")

    def image(self, stamp: int, frame_id: str = "cam", size=SIZE, encoding: str = "rgb8", channels: int = 3,
              itemsize: int = 1, bigendian: bool = False, step: int | None = None, data: bytes | None = None):
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        width, height = size
        msg = Image(header=Header(frame_id=frame_id), width=width, height=height, encoding=encoding,
                    is_bigendian=int(bigendian))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.step = width * channels * itemsize if step is None else step
        msg.data = bytes(msg.step * height) if data is None else data
        return msg

    def keypoints(self, stamp: int, people, frame_id: str = "cam", skeleton: str = "h36m17", joint_names=None):
        """``people``: (id, score, (J, 3) [u, v, conf]) triples, or Person2D messages as they are."""
        from std_msgs.msg import Header

        from lbi_ros.msg import Person2D, Person2DArray
        from lbi_ros.skeleton import H36M17

        msg = Person2DArray(header=Header(frame_id=frame_id), skeleton=skeleton,
                            joint_names=list(H36M17.joint_names if joint_names is None else joint_names))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        for person in people:
            if isinstance(person, Person2D):
                msg.people.append(person)
                continue
            pid, score, kp = person
            msg.people.append(Person2D(id=pid, score=float(score), u=[float(x) for x in kp[:, 0]],
                                       v=[float(x) for x in kp[:, 1]], confidence=[float(x) for x in kp[:, 2]]))
        return msg

    def send(self, stamp: int | None = None, people=None, image=None, keypoints=None, frame_id: str = "cam",
             send_image: bool = True, send_keypoints: bool = True) -> int:
        """Publish one frame (image + keypoints, same stamp); returns the stamp. Default: one good person."""
        stamp = self.now_ns() if stamp is None else stamp
        if send_image:
            self.pub_image.publish(image(stamp) if callable(image) else self.image(stamp, frame_id))
        if send_keypoints:
            if keypoints is None:
                keypoints = self.keypoints(stamp, people if people is not None else [good_person()], frame_id)
            self.pub_keypoints.publish(keypoints(stamp) if callable(keypoints) else keypoints)
        return stamp

    # -- the checks every case makes ----------------------------------------------------------------------
    def expect_counted(self, counter: str, send: Callable[[], int], attempts: int = 3) -> list[int]:
        """Send a bad input until ``counter`` grows (an image can be lost on best effort); return the stamps."""
        before = self.fresh_count(counter)
        stamps = []
        for _ in range(attempts):
            stamps.append(send())
            if self.until(lambda: self.count(counter) > before, 5):
                return stamps
        raise AssertionError(f"count_{counter} stayed {before}; node log:\n{self.log_tail()}")

    def expect_output(self, stamp_of: Callable[[], int], attempts: int = 3, timeout: float = 5):
        """Send a frame until its Skeleton3DArray arrives; return the message."""
        for _ in range(attempts):
            stamp = stamp_of()
            if self.until(lambda stamp=stamp: stamp in self.outputs, timeout):
                return self.outputs[stamp]
        raise AssertionError(f"no output; node log:\n{self.log_tail()}")

    def expect_good_frame(self) -> None:
        """The node still lifts a good frame correctly, and is alive."""
        out = self.expect_output(lambda: self.send())
        assert [s.id for s in out.skeletons] == ["good"], out
        assert_at(out.skeletons[0], ROOT)
        assert self.proc.poll() is None

    def expect_rejected(self, counter: str, send: Callable[[], int], warning: str | None = None) -> None:
        """The whole frame is rejected: counted, warned, nothing published for it, the next good frame is fine."""
        stamps = self.expect_counted(counter, send)
        self.expect_good_frame()
        assert not set(stamps) & set(self.outputs), f"a rejected frame was published ({counter})"
        assert f"[{warning or counter.removeprefix('bad_')}]" in self.log_path.read_text(errors="replace")


def good_person(pid: str = "good", root=ROOT, score: float = 0.9, intrinsics: Intrinsics = K, distort=None):
    uv = keypoints_at(root, intrinsics, distort)
    return pid, score, np.column_stack([uv, np.full(17, 0.9)])


def assert_at(skeleton, root, tol: float = 1e-3) -> None:
    got = np.array([skeleton.root.x, skeleton.root.y, skeleton.root.z])
    assert np.allclose(got, root, atol=tol), f"{skeleton.id} placed at {got}, expected {root}"
    positions = np.array([[p.x, p.y, p.z] for p in skeleton.positions])
    assert np.all(np.isfinite(positions)) and np.allclose(positions, STANDING + np.asarray(root), atol=tol)


def start_lifter(model: Path, ros_domain: int, ros_log_dir: Path, log_path: Path, *params: str,
                 prefix: list[str] | None = None, remaps: tuple[str, ...] = ()) -> subprocess.Popen:
    """The lifter with the oracle model, diagnostics every 0.2 s, its log (stdout and stderr) in ``log_path``."""
    args = (prefix or NODE) + ["-p", f"model_path:={model}", "-p", "backend:=onnxruntime",
                               "-p", "diagnostics_period:=0.2", "-p", "max_input_age:=3.0"]
    for p in params:
        args += ["-p", p]
    for r in remaps:
        args += ["-r", r]
    handle = open(log_path, "w")  # noqa: SIM115 - owned by the process
    return popen_ros(args, ros_domain, ros_log_dir, stdout=handle, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


@contextlib.contextmanager
def client_of(proc: subprocess.Popen, log_path: Path, name: str = "lbi_bad_input_client") -> Iterator[Client]:
    """A :class:`Client` of the started lifter ``proc`` (not yet waited for); on exit the client closes, the
    node is stopped and must have shut down cleanly (exit code 0)."""
    client = Client(proc, log_path, name)
    try:
        yield client
    finally:
        client.close()
        code = stop(proc)
    assert code == 0, f"the node did not shut down cleanly ({code}):\n{log_path.read_text()[-3000:]}"


@contextlib.contextmanager
def connected_client(proc: subprocess.Popen, log_path: Path, name: str = "lbi_bad_input_client") -> Iterator[Client]:
    """:func:`client_of`, once the node is ready (diagnostics seen, subscribed, CameraInfo sent)."""
    with client_of(proc, log_path, name) as client:
        client.wait_ready()
        yield client

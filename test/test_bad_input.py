"""The bad-input matrix over real DDS, against ONE running lifter node process.

Every case sends a bad input and waits for its named counter in /diagnostics (and the warning in the
node's log); a rejected frame must get no Skeleton3DArray at all, a repaired one only the people and
joints that were sound. Then a good frame must come out right: the node stays up and keeps working.

The node runs an "oracle" lifter: a tiny ONNX graph with the lbi_ros I/O contract (ONNX Runtime) that
predicts the same standing pose for everyone. The good frame's 2D keypoints are that pose projected
at a known root, so its output must put the person exactly there: a real check of the published
values that does not depend on trained weights.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lbi_ros.geometry import Intrinsics, project
from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros

pytestmark = [pytest.mark.ros, requires_ros, pytest.mark.bad_input]
NODE = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args"]
# 320x240 rgb8 (230 KB) fits Fast DDS's default 512 KB shared-memory segment; larger best-effort samples
# go over UDP fragments and are lost under CPU load (see test_8k_image_is_lifted for large frames).
K = Intrinsics(250.0, 250.0, 160.0, 120.0)
SIZE = (320, 240)
ROOT = np.array([0.2, 0.1, 4.0])
# H36M-17 standing pose, metres, camera axes (y down), pelvis at the origin: what the oracle predicts.
STANDING = np.array([
    [0, 0, 0], [-0.13, 0, 0], [-0.13, 0.45, 0], [-0.13, 0.88, 0], [0.13, 0, 0], [0.13, 0.45, 0],
    [0.13, 0.88, 0], [0, -0.25, 0], [0, -0.5, 0], [0, -0.6, -0.05], [0, -0.72, 0], [0.18, -0.48, 0],
    [0.2, -0.2, 0], [0.2, 0.05, 0], [-0.18, -0.48, 0], [-0.2, -0.2, 0], [-0.2, 0.05, 0],
], np.float32)  # fmt: skip


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


@pytest.fixture(scope="module")
def oracle_onnx(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    return write_oracle_onnx(tmp_path_factory.mktemp("oracle") / "oracle.onnx")


@pytest.fixture(scope="module")
def client(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("lifter") / "lifter.log"
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_path)
    c = Client(proc, log_path)
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()
        code = stop(proc)
    assert code == 0, f"the node did not shut down cleanly ({code}):\n{log_path.read_text()[-3000:]}"


# -- keypoints --------------------------------------------------------------------------------------------
def test_nonfinite_keypoints_become_missing_joints(client):
    pid, score, kp = good_person("nan")
    kp[3, 0], kp[5, 1], kp[12, 0] = np.nan, np.inf, -np.inf
    stamps = client.expect_counted("bad_nonfinite_keypoint", lambda: client.send(people=[(pid, score, kp)]))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    (skeleton,) = out.skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [3, 5, 12]
    assert_at(skeleton, ROOT)  # the other 14 joints place the person exactly
    client.expect_good_frame()


def test_negative_and_out_of_image_keypoints_become_missing(client):
    pid, score, kp = good_person("outside")
    kp[2, 0], kp[6, 1], kp[9, :2] = -40.0, 5000.0, (1e30, -1e30)
    stamps = client.expect_counted("bad_keypoint_out_of_image", lambda: client.send(people=[(pid, score, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [2, 6, 9]
    assert_at(skeleton, ROOT)
    client.expect_good_frame()


def test_person_without_usable_joints_skipped_others_lifted(client):
    _, _, garbage = good_person()
    garbage[:, :2] = np.nan
    people = [("garbage", 0.9, garbage), good_person("good")]
    stamps = client.expect_counted("bad_too_few_joints", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["good"]
    assert_at(out.skeletons[0], ROOT)


def test_confidences_outside_unit_interval(client):
    pid, score, kp = good_person("conf")
    kp[1, 2], kp[4, 2], kp[7, 2] = 1.5, -0.3, np.nan
    stamps = client.expect_counted("bad_confidence_out_of_range", lambda: client.send(people=[(pid, score, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert [i for i, v in enumerate(skeleton.valid) if not v] == [1, 4, 7]
    assert all(0.0 <= c <= 1.0 for c in skeleton.confidence)
    client.expect_good_frame()


def test_score_outside_unit_interval_is_clipped(client):
    pid, _, kp = good_person("score")
    stamps = client.expect_counted("bad_score_out_of_range", lambda: client.send(people=[(pid, math.nan, kp)]))
    (skeleton,) = client.expect_output(lambda: stamps[-1], attempts=1).skeletons
    assert skeleton.score == 0.0


def test_joint_names_count_not_matching(client):
    from lbi_ros.skeleton import H36M17

    client.expect_rejected("bad_joint_count_mismatch", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], joint_names=H36M17.joint_names[:15])))


def test_person_arrays_of_the_wrong_length_skip_that_person(client):
    pid, score, kp = good_person("short")
    people = [(pid, score, kp[:15]), good_person("good")]
    stamps = client.expect_counted("bad_joint_count_mismatch", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["good"]


def test_unknown_topology(client):
    client.expect_rejected("bad_unknown_skeleton", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], skeleton="openpose25")))


def test_joint_names_not_matching_the_skeleton(client):
    from lbi_ros.skeleton import H36M17

    names = list(H36M17.joint_names)
    names[1], names[4] = names[4], names[1]  # left/right hips swapped: every joint would be mislabelled
    client.expect_rejected("bad_joint_names_mismatch", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [good_person()], joint_names=names)))


def test_empty_person_list_publishes_an_empty_array(client):
    stamps = client.expect_counted("empty_frames", lambda: client.send(people=[]))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert list(out.skeletons) == []
    client.expect_good_frame()


def test_duplicate_person_ids_keep_the_first(client):
    people = [good_person("dup"), good_person("dup", root=(-0.5, 0.0, 6.0))]
    stamps = client.expect_counted("bad_duplicate_person_id", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert [s.id for s in out.skeletons] == ["dup"]
    assert_at(out.skeletons[0], ROOT)


def test_empty_person_id_gets_a_placeholder(client):
    stamps = client.expect_counted("bad_empty_person_id", lambda: client.send(people=[good_person("")]))
    assert [s.id for s in client.expect_output(lambda: stamps[-1], attempts=1).skeletons] == ["idx0"]


def test_hundred_people_lifts_the_best_scored(client):
    roots = [(x, 0.0, 5.0 + (i % 5)) for i, x in enumerate(np.linspace(-1.2, 1.2, 100))]
    people = [good_person(f"p{i}", root=r, score=(i + 1) / 100) for i, r in enumerate(roots)]
    stamps = client.expect_counted("bad_people_over_limit", lambda: client.send(people=people))
    out = client.expect_output(lambda: stamps[-1], attempts=1)
    assert sorted(s.id for s in out.skeletons) == sorted(f"p{i}" for i in range(84, 100))  # max_people = 16
    for skeleton in out.skeletons:
        assert_at(skeleton, roots[int(skeleton.id[1:])])
    client.expect_good_frame()


def test_absurd_people_count_rejected(client):
    from lbi_ros.msg import Person2D

    person = Person2D(id="x", score=0.5, u=[1.0] * 17, v=[1.0] * 17, confidence=[0.5] * 17)
    client.expect_rejected("bad_too_many_people", lambda: client.send(
        keypoints=lambda s: client.keypoints(s, [person] * 1001)))


# -- images -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(0, 0), (1, 1)], ids=["0x0", "1x1"])
def test_degenerate_image(client, size):
    client.expect_rejected("bad_image_too_small", lambda: client.send(
        image=lambda s: client.image(s, size=size)))


LARGE_SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors>
    <transport_descriptor><transport_id>shm_large</transport_id><type>SHM</type>
      <segment_size>{segment_bytes}</segment_size></transport_descriptor>
    <transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>
  </transport_descriptors>
  <participant profile_name="large_frames" is_default_profile="true"><rtps>
    <userTransports><transport_id>shm_large</transport_id><transport_id>udp</transport_id></userTransports>
    <useBuiltinTransports>false</useBuiltinTransports>
  </rtps></participant>
</profiles></dds>
"""
"""A Fast DDS profile for a process that publishes large frames: a shared-memory segment that holds them.
With the default 512 KB segment, larger samples go over UDP fragments, and best effort loses them."""

PUBLISH_8K = """
import json, sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from lbi_ros.msg import Person2D, Person2DArray
k, (w, h), uv = json.loads(sys.argv[1])
rclpy.init()
node = rclpy.create_node("lbi_8k_camera")
pub_info = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
pub_image = node.create_publisher(Image, "image", qos_profile_sensor_data)
pub_kp = node.create_publisher(Person2DArray, "keypoints_2d", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 20
while pub_image.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
image = Image(width=w, height=h, encoding="mono8", step=w)
image.data = bytes(w * h)
for _ in range(int(sys.argv[2])):
    header = Header(frame_id="cam8k", stamp=node.get_clock().now().to_msg())
    pub_info.publish(CameraInfo(header=header, width=w, height=h, k=k))
    time.sleep(0.3)
    image.header = header
    pub_image.publish(image)
    pub_kp.publish(Person2DArray(header=header, skeleton="h36m17", people=[Person2D(
        id="good", score=0.9, u=[p[0] for p in uv], v=[p[1] for p in uv], confidence=[0.9] * 17)]))
    time.sleep(2.0)
node.destroy_node()
rclpy.try_shutdown()
"""


def test_8k_image_is_lifted(client, ros_domain, ros_log_dir, tmp_path):
    """7680x4320 (mono8, 33 MB) from a camera process whose Fast DDS segment holds such frames."""
    size = (7680, 4320)
    k8 = Intrinsics(6000.0, 6000.0, 3840.0, 2160.0)
    profile = tmp_path / "large_frames.xml"
    profile.write_text(LARGE_SHM_PROFILE.format(segment_bytes=48 << 20))
    frame = json.dumps([[k8.fx, 0, k8.cx, 0, k8.fy, k8.cy, 0, 0, 1], size, keypoints_at(ROOT, k8).tolist()])
    camera = popen_ros(["python", "-c", PUBLISH_8K, frame, "3"], ros_domain, ros_log_dir,
                       env={**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile)})
    try:
        assert client.until(lambda: any(o.header.frame_id == "cam8k" for o in client.outputs.values()), 60), \
            client.log_tail()
    finally:
        camera.kill()
        camera.wait(timeout=10)
    out = next(o for o in client.outputs.values() if o.header.frame_id == "cam8k")
    assert_at(out.skeletons[0], ROOT)
    client.expect_good_frame()


def test_image_above_the_size_limit(client):
    client.expect_rejected("bad_image_too_large", lambda: client.send(
        image=lambda s: client.image(s, size=(9000, 2), encoding="mono8", channels=1)))


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8", "nonsense"])
def test_unsupported_encoding(client, encoding):
    client.expect_rejected("bad_unsupported_encoding", lambda: client.send(
        image=lambda s: client.image(s, encoding=encoding, channels=2)))


def test_step_smaller_than_a_row(client):
    client.expect_rejected("bad_step", lambda: client.send(
        image=lambda s: client.image(s, step=320, data=bytes(320 * 240))), warning="bad_step")


def test_data_shorter_than_step_times_height(client):
    client.expect_rejected("bad_data_length", lambda: client.send(
        image=lambda s: client.image(s, data=bytes(320 * 3 * 239))), warning="bad_data_length")


def test_image_not_the_size_of_its_camera_info(client):
    client.expect_rejected("bad_camera_info_size_mismatch", lambda: client.send(
        image=lambda s: client.image(s, size=(160, 120))))


@pytest.mark.parametrize("encoding, channels, itemsize, bigendian", [
    ("bgr8", 3, 1, False), ("bgra8", 4, 1, False), ("rgba8", 4, 1, False), ("mono8", 1, 1, False),
    ("mono16", 1, 2, False), ("mono16", 1, 2, True),
], ids=["bgr8", "bgra8", "rgba8", "mono8", "mono16-le", "mono16-be"])
def test_other_encodings_are_lifted(client, encoding, channels, itemsize, bigendian):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, 320 * 240 * channels * itemsize, dtype=np.uint8).tobytes()
    out = client.expect_output(lambda: client.send(image=lambda s: client.image(
        s, encoding=encoding, channels=channels, itemsize=itemsize, bigendian=bigendian, data=data)))
    assert_at(out.skeletons[0], ROOT)


# -- stamps -----------------------------------------------------------------------------------------------
def test_zero_stamp(client):
    client.expect_rejected("bad_zero_stamp", lambda: client.send(stamp=0))


def test_stamp_far_in_the_past(client):
    client.expect_rejected("bad_stale_input", lambda: client.send(stamp=time.time_ns() - 3600 * 10**9))


def test_stamp_in_the_future(client):
    client.expect_rejected("bad_future_stamp", lambda: client.send(stamp=time.time_ns() + 3600 * 10**9))


def test_stamps_going_backwards(client):
    client.expect_good_frame()
    last = max(client.outputs)
    client.expect_rejected("bad_stamp_backwards", lambda: client.send(stamp=last - 100_000_000))


# -- camera model ---------------------------------------------------------------------------------------------
def test_missing_camera_info(client):
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="never_calibrated"))


@pytest.mark.parametrize("k", [[0.0, 0, 320, 0, 500, 240, 0, 0, 1], [-500.0, 0, 320, 0, -500, 240, 0, 0, 1],
                               [500.0, 0, 320, 0, math.nan, 240, 0, 0, 1], [500.0, 0, 320, 0, 500, 240, 0, 0, 0]],
                         ids=["zero-focal", "negative-focal", "nan", "not-a-camera-matrix"])
def test_invalid_intrinsics(client, k, request):
    frame = f"cam_{request.node.callspec.id}"
    client.camera_info(frame, k=k, expect_bad="bad_camera_info")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id=frame))


def test_unsupported_distortion_model(client):
    client.camera_info("cam_weird", d=[0.1, 0.0, 0.0, 0.0], model="kannala_brandt_9", expect_bad="bad_unsupported_distortion")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="cam_weird"))


def test_distortion_with_the_wrong_coefficient_count(client):
    client.camera_info("cam_d3", d=[0.1, 0.01, 0.001], expect_bad="bad_camera_info")
    client.expect_rejected("bad_no_camera_info", lambda: client.send(frame_id="cam_d3"))


@pytest.mark.parametrize("model, d", [("plumb_bob", [-0.35, 0.12, 0.001, -0.002, 0.0]),
                                      ("rational_polynomial", [-0.3, 0.08, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0]),
                                      ("equidistant", [0.05, -0.02, 0.005, 0.0])])
def test_distorted_camera_keypoints_are_undistorted(client, model, d):
    import cv2

    frame, root = f"cam_{model}", (0.8, 0.2, 3.0)  # off-centre, where the lens bends the most
    client.camera_info(frame, d=d, model=model)
    kmat, dist = K.matrix(), np.asarray(d, np.float64)

    def distort(uv: np.ndarray) -> np.ndarray:
        rays = np.column_stack([(uv - [K.cx, K.cy]) / [K.fx, K.fy], np.ones(len(uv))])[:, None, :]
        if model == "equidistant":
            return cv2.fisheye.projectPoints(rays, np.zeros(3), np.zeros(3), kmat, dist)[0].reshape(-1, 2)
        return cv2.projectPoints(rays, np.zeros(3), np.zeros(3), kmat, dist)[0].reshape(-1, 2)

    person = good_person(root=root, distort=distort)
    assert np.abs(person[2][:, :2] - keypoints_at(root)).max() > 2.0  # the distortion is not negligible
    out = client.expect_output(lambda: client.send(frame_id=frame, people=[person]))
    assert_at(out.skeletons[0], root, tol=5e-3)


# -- synchronisation ------------------------------------------------------------------------------------------
def test_keypoints_for_an_image_that_never_arrives(client):
    stamps = client.expect_counted("sync_dropped_keypoints", lambda: (
        s := client.send(send_image=False), client.send(), s)[-1])
    client.expect_good_frame()
    assert not set(stamps) & set(client.outputs)
    assert "[sync_dropped_keypoints]" in client.log_path.read_text()


def test_image_without_keypoints(client):
    stamps = client.expect_counted("sync_dropped_images", lambda: (
        s := client.send(send_keypoints=False), client.send(), s)[-1])
    client.expect_good_frame()
    assert not set(stamps) & set(client.outputs)


def test_lost_image_at_a_high_rate_never_pairs_neighbours(client):
    """At 120 Hz frames are 8.3 ms apart, inside the default 20 ms slop: when one image is lost, its
    keypoints must not be paired with the next image (a false frame); the slop shrinks with the frame interval."""
    period = 1_000_000_000 // 120
    base = client.now_ns()
    for k in range(5):  # an established 120 Hz stream
        client.send(stamp=base + k * period)
    orphan, stamp = base + 5 * period, base + 6 * period
    client._last_stamp = stamp
    before = client.fresh_count("sync_dropped_keypoints")
    _, _, wrong = good_person("wrong", root=(-0.6, 0.0, 5.0))
    client.send(stamp=orphan, people=[("wrong", 0.9, wrong)], send_image=False)  # its image is "lost"
    client.until(lambda: False, 0.3)
    out = client.expect_output(lambda: client.send(stamp=stamp), attempts=1)
    assert [s.id for s in out.skeletons] == ["good"] and orphan not in client.outputs
    assert_at(out.skeletons[0], ROOT)
    assert client.until(lambda: client.count("sync_dropped_keypoints") > before, 10)
    assert float(client.counters["sync_effective_slop_ms"]) < 4.0
    client.until(lambda: False, 0.5)
    client.expect_good_frame()


# -- parameters -----------------------------------------------------------------------------------------------
def test_runtime_parameters_out_of_range_rejected_with_a_reason(client):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(client.node, "lbi_lifter")
    assert params.wait_for_services(timeout_sec=30)
    before = client.fresh_count("rejected_parameters")
    bad = [Parameter("max_people", value=0), Parameter("sync_slop", value=math.nan),
           Parameter("min_joint_confidence", value=1.5), Parameter("max_stamp_ahead", value=-1.0)]
    future = params.set_parameters(bad)
    assert client.until(future.done, 20)
    results = future.result().results
    assert not any(r.successful for r in results)
    for parameter, result in zip(bad, results, strict=True):
        assert parameter.name in result.reason, result.reason
    assert client.until(lambda: client.count("rejected_parameters") >= before + len(bad), 10)
    future = params.set_parameters([Parameter("fallback_backends", value=["torch"])])  # read-only at runtime
    assert client.until(future.done, 20) and not future.result().results[0].successful
    client.expect_good_frame()


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


@pytest.fixture(scope="module")
def start_up_failures(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    """Start every bad configuration at once (in parallel, to stay fast); case -> (exit code, output)."""
    import torch
    from safetensors.torch import save_file

    from lbi_ros.checkpoint import FORMAT_VERSION, KEY_FORMAT, KEY_MODEL_CONFIG, save_checkpoint
    from lbi_ros.config import to_dict
    from lbi_ros.model import build_model
    from lbi_ros.model.config import ModelConfig

    tmp = tmp_path_factory.mktemp("startup")
    config = ModelConfig(kind="lift2d", dim=32, num_heads=2, depth_lift2d=1)
    good = save_checkpoint(tmp / "good.safetensors", build_model(config), config)
    foreign = tmp / "foreign.safetensors"  # some other network's weights, no lbi_ros config
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3)}, str(foreign))
    mismatch = tmp / "mismatch.safetensors"  # lbi_ros metadata whose config does not build these weights
    tensors = build_model(config).state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(mismatch), metadata={
        KEY_FORMAT: FORMAT_VERSION, KEY_MODEL_CONFIG: json.dumps(to_dict(ModelConfig(kind="lift2d", dim=64)))})
    plain_onnx = tmp / "plain.onnx"  # a valid ONNX graph that lbi_ros did not export
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])),
              str(plain_onnx))
    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    cases = {
        "sync_slop": (["sync_slop:=0.5"], "sync_slop"),
        "max_people": (["max_people:=0"], "max_people"),
        "wrong_type": (["max_people:=many"], "max_people"),
        "fallback": (["fallback_backends:=[cuda]"], "unknown backend"),
        "model_missing": ([f"model_path:={tmp / 'nope.safetensors'}"], "does not exist"),
        "model_directory": ([f"model_path:={tmp}"], "not a regular file"),
        "model_truncated": ([f"model_path:={_truncated(good, tmp / 'half.safetensors')}", "backend:=torch"],
                            "not a readable safetensors checkpoint"),
        "model_wrong_architecture": ([f"model_path:={foreign}", "backend:=torch"], "not an lbi_ros checkpoint"),
        "model_config_mismatch": ([f"model_path:={mismatch}", "backend:=torch"], "do not fit the config"),
        "onnx_truncated": ([f"model_path:={_truncated(oracle_onnx, tmp / 'half.onnx')}"], "cannot start"),
        "onnx_not_lbi": ([f"model_path:={plain_onnx}"], "exported by lbi_ros"),
        "engine_cache_dir": ([f"engine_cache_dir:={blocker}/engines"], "engine_cache_dir"),
        "tensorrt_unavailable": (["backend:=tensorrt"], "tensorrt"),
    }
    procs = {}
    for name, (params, _) in cases.items():
        args = NODE + ["-p", f"model_path:={oracle_onnx}", "-p", "backend:=onnxruntime"]
        for p in params:
            args += ["-p", p]
        procs[name] = popen_ros(args, ros_domain, ros_log_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        results[name] = (proc.returncode, out, cases[name][1])
    return results


@pytest.mark.parametrize("case", ["sync_slop", "max_people", "wrong_type", "fallback", "model_missing",
                                  "model_directory", "model_truncated", "model_wrong_architecture",
                                  "model_config_mismatch", "onnx_truncated", "onnx_not_lbi", "engine_cache_dir",
                                  "tensorrt_unavailable"])
def test_bad_start_up_configuration_fails_clearly(start_up_failures, case):
    """Exit code 2 and one clear line naming the problem: no traceback, no half-started node."""
    code, out, expected = start_up_failures[case]
    assert code == 2, out[-2000:]
    assert expected in out and "cannot start" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]


# -- engine cache ---------------------------------------------------------------------------------------------
def test_corrupt_or_foreign_engine_is_rebuilt_never_deserialised(tmp_path):
    """A corrupt engine file, or one built for another TensorRT/GPU, is never handed to the deserialiser.

    (A node-level test needs TensorRT and a GPU; this machine kind has neither, so the cache is driven
    with a stand-in builder whose bytes carry a TensorRT plan header.)
    """
    import dataclasses

    from lbi_ros.runtime.engine_cache import BatchProfile, EngineCache, EngineKey

    key = EngineKey("ab" * 32, "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", "fp32", BatchProfile(1, 2, 4))
    engine = b"ftrt" + bytes(range(256)) * 4
    loaded: list[bytes] = []

    def load(data: bytes) -> bytes:
        loaded.append(data)
        return data

    cache = EngineCache(tmp_path / "engines")
    path = cache.get_or_build(key, lambda: engine, load).path
    assert (path.parent.stat().st_mode & 0o777) == 0o700  # user-only
    corrupt = bytearray(engine)
    corrupt[100] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    again = cache.get_or_build(key, lambda: engine, load)
    assert again.built and bytes(corrupt) not in loaded and path.read_bytes() == engine
    other = dataclasses.replace(key, trt_version="10.7.0")  # an upgrade: another file, built anew
    sidecar = json.loads(cache.paths(key).sidecar.read_text())
    sidecar["key"] = other.to_dict()
    cache.paths(key).sidecar.write_text(json.dumps(sidecar))  # a sidecar claiming another TensorRT
    assert cache.get_or_build(key, lambda: engine, load).built
    assert all(data == engine for data in loaded)


def test_engine_cache_directory_is_made_private(tmp_path):
    import os

    from lbi_ros.runtime.engine_cache import make_private_dir

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    make_private_dir(loose)
    assert (loose.stat().st_mode & 0o777) == 0o700
    assert (make_private_dir(tmp_path / "new" / "engines").stat().st_mode & 0o777) == 0o700

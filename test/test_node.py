"""The lifter node over real DDS: start-up errors, diagnostics, bad input counted, runtime parameter checks.

The node runs in its own process (as in production); this test process publishes and listens with
real rclpy on the run's own loopback-only domain.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from lbi_ros.ros.environment import popen_ros

from .conftest import requires_ros

pytestmark = [pytest.mark.ros, requires_ros]
NODE = ["python", "-m", "lbi_ros.ros.lift_node", "--ros-args"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from lbi_ros.checkpoint import save_checkpoint
    from lbi_ros.model import build_model
    from lbi_ros.model.config import ModelConfig

    config = ModelConfig(kind="lift2d")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lift2d.safetensors", build_model(config), config)


@pytest.fixture(scope="module")
def ros_client():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("lbi_test_client", context=context)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def lifter(checkpoint, ros_domain, ros_log_dir):
    proc = popen_ros(NODE + ["-p", f"model_path:={checkpoint}", "-p", "backend:=torch",
                             "-p", "diagnostics_period:=0.2", "-p", "max_input_age:=0.0"], ros_domain, ros_log_dir)
    yield proc
    proc.terminate()
    proc.wait(timeout=20)


def spin_until(node, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _spin_once(node)
        if predicate():
            return True
    return False


def _spin_once(node) -> None:
    from rclpy.executors import SingleThreadedExecutor

    executor = getattr(node, "_test_executor", None)
    if executor is None:
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        node._test_executor = executor
    executor.spin_once(timeout_sec=0.05)


def latest_counters(diagnostics: list) -> dict[str, str]:
    for msg in reversed(diagnostics):
        for status in msg.status:
            if status.name.startswith("lbi_ros"):
                return {kv.key: kv.value for kv in status.values}
    return {}


@pytest.mark.parametrize("args, message", [
    (["-p", "model_path:=/nonexistent/model.safetensors"], "does not exist"),
    (["-p", "backend:=quantum"], "backend"),
    (["-p", "sync_slop:=0.5"], "sync_slop"),
])
def test_bad_start_up_fails_clearly(args, message, ros_domain, ros_log_dir, checkpoint):
    import subprocess

    base = ["-p", f"model_path:={checkpoint}"] if "model_path" not in args[1] else []
    proc = popen_ros(NODE + base + args, ros_domain, ros_log_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert message in out, out[-2000:]


def test_diagnostics_and_bad_input_counted(lifter, ros_client):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from lbi_ros.msg import Person2D, Person2DArray

    diagnostics: list = []
    ros_client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    pub_image = ros_client.create_publisher(Image, "image", qos_profile_sensor_data)
    pub_info = ros_client.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    pub_kp = ros_client.create_publisher(Person2DArray, "keypoints_2d",
                                         QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(ros_client, lambda: latest_counters(diagnostics), 60), "no diagnostics from the node"
    assert latest_counters(diagnostics)["backend"] == "torch"
    assert spin_until(ros_client, lambda: pub_kp.get_subscription_count() > 0, 20)

    def frame(sec: int, skeleton: str = "h36m17", encoding: str = "rgb8") -> None:
        header = Header(frame_id="cam")
        header.stamp.sec = sec
        info = CameraInfo(header=header, width=64, height=48)
        info.k = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]
        pub_info.publish(info)
        image = Image(header=header, width=64, height=48, encoding=encoding, step=64 * 3)
        image.data = np.zeros(64 * 48 * 3, np.uint8).tobytes()
        pub_image.publish(image)
        person = Person2D(id="p", score=1.0, u=[32.0] * 17, v=[24.0] * 17, confidence=[1.0] * 17)
        pub_kp.publish(Person2DArray(header=header, skeleton=skeleton, people=[person]))

    for sec in range(1, 4):
        frame(sec, skeleton="openpose25")  # unknown topology
        time.sleep(0.05)
    for sec in range(4, 7):
        frame(sec, encoding="yuv422")  # unsupported encoding
        time.sleep(0.05)

    def counted() -> bool:
        c = latest_counters(diagnostics)
        return int(c.get("count_bad_unknown_skeleton", 0)) >= 1 and int(c.get("count_bad_unsupported_encoding", 0)) >= 1

    assert spin_until(ros_client, counted, 30), latest_counters(diagnostics)
    assert lifter.poll() is None, "the node died on bad input"


def test_runtime_parameter_out_of_range_rejected(lifter, ros_client):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(ros_client, "lbi_lifter")
    assert client.wait_for_services(timeout_sec=30)
    future = client.set_parameters([Parameter("sync_slop", value=0.5), Parameter("max_people", value=4)])
    assert spin_until(ros_client, future.done, 20)
    bad, good = future.result().results
    assert not bad.successful and "sync_slop" in bad.reason
    assert good.successful
    assert lifter.poll() is None

"""``image_transport:=compressed`` over real DDS: the node takes sensor_msgs/CompressedImage on
``<image>/compressed`` (the topic image_transport's compressed publisher uses), lifts jpeg and png frames,
and counts undecodable data without publishing for it or stopping.

The node runs the oracle lifter of test/node_harness.py, so a good frame's output is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import requires_ros
from .node_harness import ROOT, SIZE, Client, assert_at, client_of, start_lifter

pytestmark = [pytest.mark.ros, requires_ros]


@pytest.fixture(scope="module")
def compressed_client(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    log_path = tmp_path_factory.mktemp("compressed") / "lifter.log"
    # the image topic is remapped, as lbi launch does: the node must subscribe to <remapped>/compressed
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_path, "image_transport:=compressed",
                        remaps=("image:=camera/image_raw",))
    with client_of(proc, log_path, "lbi_compressed_client") as client:
        client.pub_compressed = client.node.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                                             qos_profile_sensor_data)
        assert client.until(lambda: client.diagnostics_seen > 0 or proc.poll() is not None, 90), "no diagnostics"
        assert proc.poll() is None, client.log_tail()
        assert client.until(lambda: client.pub_compressed.get_subscription_count() > 0
                            and client.pub_keypoints.get_subscription_count() > 0, 30), "the node did not subscribe"
        assert client.node.count_subscribers("camera/image_raw") == 0  # no raw subscription beside it
        client.camera_info()
        yield client


def send_compressed(client: Client, fmt: str = "jpeg", data: bytes | None = None) -> int:
    """One frame: a CompressedImage (a grey 320x240 picture, or ``data``) and good keypoints, same stamp."""
    from std_msgs.msg import Header

    from lbi_ros.ros.image_conversion import rgb_to_compressed

    stamp = client.now_ns()
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg = rgb_to_compressed(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8), header, fmt=fmt)
    if data is not None:
        msg.data = data
    client.pub_compressed.publish(msg)
    client.send(stamp, send_image=False)
    return stamp


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_a_compressed_image_client_gets_skeletons(compressed_client, fmt):
    out = compressed_client.expect_output(lambda: send_compressed(compressed_client, fmt))
    assert [s.id for s in out.skeletons] == ["good"]
    assert_at(out.skeletons[0], ROOT)


def test_undecodable_data_is_counted_and_the_node_keeps_serving(compressed_client):
    client = compressed_client
    stamps = client.expect_counted("bad_undecodable_image",
                                   lambda: send_compressed(client, data=b"\xff\xd8\xff\xe0 truncated jpeg"))
    out = client.expect_output(lambda: send_compressed(client))
    assert_at(out.skeletons[0], ROOT)
    assert not set(stamps) & set(client.outputs), "a frame whose image did not decode was published"
    assert "[undecodable_image]" in client.log_path.read_text(errors="replace")
    assert client.proc.poll() is None

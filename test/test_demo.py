"""End to end over real DDS: the demo graph (player -> lifter node -> recorder) with the shipped weights.

A node fed a known input (the rendered demo scene) publishes skeletons that match its ground truth.
"""

from __future__ import annotations

import json

import pytest

from .conftest import require, require_pose_models, requires_ros

pytestmark = [pytest.mark.ros, requires_ros]


def test_demo_graph_lifts_the_scene(tmp_path):
    from lbi_ros.ros.tools.demo import run_demo
    from lbi_ros.weights import default_weights_path

    require(default_weights_path("default").is_file(), "shipped default weights are not in this checkout")
    result = run_demo(tmp_path, duration_s=2.4, rate_hz=10.0, backend="onnxruntime")
    m = result.metrics
    assert m.frames_in == 24
    assert m.people_lifted >= 0.8 * m.people_expected, m
    assert m.mpjpe_mm < 200.0, m  # trained weights; an untrained lifter is at ~400 mm
    assert m.position_error_mm < 1500.0, m  # metres-scale placement, not a guess at the origin
    assert result.picture.stat().st_size > 10_000
    report = json.loads(result.report.read_text())
    assert report["node_diagnostics"]["backend"] == "onnxruntime"
    assert int(report["node_diagnostics"]["count_frames_published"]) >= 0.8 * 24
    assert report["summary"]["sync_matched"] >= 0.8 * 24 and report["recorded_messages"]["image"] >= 20
    assert m.relay_latency_p50_ms > 0  # the bare relay ran on the same inputs
    summary = report["summary"]
    # node-added latency: percentiles of per-frame differences (lifter - relay on the same image), over pairs
    assert m.node_added_pairs >= 0.8 * 24 and summary["node_added_pairs"] == m.node_added_pairs
    assert summary["node_added_p99_ms"] >= summary["node_added_p50_ms"] > 0
    assert summary["node_receive_to_publish_p99_ms"] >= summary["node_receive_to_publish_p50_ms"] > 0
    # the node as users get it: default QoS and parameters except the backend asked for here
    assert summary["node_deviations"] == ["backend:=onnxruntime"]
    assert summary["distinct_poses"] == 24 and summary["playback"] == "ping-pong"
    # no CameraInfo lost: every one the camera published (warm-up included) reached the node
    assert summary["camera_info_lost_in_dds"] == 0
    assert summary["camera_info_received_by_node"] == summary["frames_sent"] > 24


def test_the_recording_opens_with_standard_mcap_readers(tmp_path):
    """The demo's MCAP holds decodable ROS 2 messages (mcap + mcap_ros2, as Foxglove reads them)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from lbi_ros.ros.tools.demo import run_demo
    from lbi_ros.weights import default_weights_path

    require(default_weights_path("default").is_file(), "shipped default weights are not in this checkout")
    result = run_demo(tmp_path, duration_s=1.0, rate_hz=10.0, backend="torch", relay=False)
    topics: dict[str, int] = {}
    with open(result.recording, "rb") as f:
        for _schema, channel, _message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]
                                                                ).iter_decoded_messages():
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            if channel.topic == "/skeletons_3d" and decoded.skeletons:
                assert len(decoded.skeletons[0].positions) == 17
    assert {"/image", "/camera_info", "/keypoints_2d", "/skeletons_3d", "/diagnostics"} <= set(topics)


def test_camera_only_demo_scores_the_peers_on_the_same_people(tmp_path):
    """``keypoints="builtin"``: LBI, the 2D-only lifter and BlazePose world landmarks, root-relative MPJPE on
    the same people, in the summary (issue 16)."""
    import math

    from lbi_ros.ros.tools.demo import run_demo
    from lbi_ros.weights import default_weights_path

    require(default_weights_path("default").is_file() and default_weights_path("baseline-2d").is_file(),
            "shipped weights are not in this checkout")
    require_pose_models()
    result = run_demo(tmp_path, duration_s=1.5, rate_hz=4.0, backend="onnxruntime", body="mesh", keypoints="builtin")
    peers = json.loads(result.report.read_text())["summary"]["peer_mpjpe_mm"]
    assert {"lbi", "lift2d", "blazepose_world", "people", "blazepose_world_without_offsets"} == set(peers)
    assert 0 < peers["people"] <= result.metrics.people_lifted, peers
    for name in ("lbi", "lift2d", "blazepose_world", "blazepose_world_without_offsets"):
        assert math.isfinite(peers[name]) and 0 < peers[name] < 400, peers  # mm; ~100-120 on the 10 s run
    if peers["people"] == result.metrics.people_lifted:  # the same people: LBI's number is the demo's MPJPE
        assert peers["lbi"] == pytest.approx(result.metrics.mpjpe_mm)


def test_the_recorder_times_outputs_at_dds_reception_not_at_its_callback():
    """The recorder also writes the MCAP file: a callback that runs late must not count as the lifter's
    latency, so the receive time is the reader's reception stamp from rclpy's MessageInfo."""
    import time

    from lbi_ros.msg import Skeleton3D, Skeleton3DArray
    from lbi_ros.ros.tools.demo import _skeletons

    msg = Skeleton3DArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100, 5
    msg.skeletons = [Skeleton3D(id="a")]
    received = _skeletons(msg, {"received_timestamp": 100_000_000_123, "source_timestamp": 1})
    assert received.stamp_ns == 100_000_000_005
    assert received.received_ns == 100_000_000_123  # not time.time_ns(), which is ~now
    assert abs(received.received_ns - time.time_ns()) > 10**9
    assert list(received.people) == ["a"] and received.people["a"].shape == (0,)


def test_every_option_the_demo_passes_the_node_is_a_listed_deviation():
    from lbi_ros.ros.tools.demo import node_deviations

    assert node_deviations("auto", "") == []
    assert node_deviations("onnxruntime", "baseline-2d", "int8") == [
        "backend:=onnxruntime", "model_path:=baseline-2d", "precision:=int8"]

"""Real ROS 2 over DDS: two nodes in two processes on loopback exchange lbi_ros and tf2 messages."""

from __future__ import annotations

import json
import subprocess

import pytest

from lbi_ros.ros.environment import popen_ros, reserve_domain_id

from .conftest import TEST_DIR, requires_ros

pytestmark = [pytest.mark.ros, requires_ros]
TALKER = str(TEST_DIR / "ros_helpers" / "smoke_talker.py")
LISTENER = str(TEST_DIR / "ros_helpers" / "smoke_listener.py")


def run_pair(talker_domain: int, listener_domain: int, log_dir, out, timeout_s: float):
    talker = popen_ros(["python", TALKER, str(timeout_s + 5)], talker_domain, log_dir)
    try:
        listener = popen_ros(["python", LISTENER, str(out), str(timeout_s)], listener_domain, log_dir)
        code = listener.wait(timeout=timeout_s + 30)
    finally:
        talker.terminate()
        try:
            talker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            talker.kill()
    return code, talker.pid, listener.pid


def test_messages_cross_process_boundary(ros_domain, ros_log_dir, tmp_path):
    out = tmp_path / "got.json"
    code, talker_pid, listener_pid = run_pair(ros_domain, ros_domain, ros_log_dir, out, timeout_s=20)
    got = json.loads(out.read_text())
    assert code == 0, f"listener received only {sorted(got)}"
    assert talker_pid != listener_pid and got["pid"] == listener_pid
    assert got["env"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert got["env"]["ROS_DOMAIN_ID"] == str(ros_domain)
    kp = got["keypoints"]
    assert kp["frame_id"] == "camera_optical_frame" and kp["skeleton"] == "smoke3"
    assert kp["joint_names"] == ["nose", "left_eye", "right_eye"]
    assert kp["id"] == "person_7" and kp["score"] == 0.875
    assert kp["u"] == [10.5, 20.25, 30.0] and kp["v"] == [1.0, 2.0, 3.0] and kp["confidence"] == [0.5, 1.0, 0.0]
    assert kp["stamp"][0] >= 1000 and kp["stamp"][1] == 500
    assert got["tf"] == {"frame_id": "camera_optical_frame", "child": "body_person_7",
                         "xyz": [0.25, 0.0, 3.5], "w": 1.0}


def test_listener_fails_when_nothing_arrives(ros_log_dir, tmp_path):
    """The smoke test can fail: a talker in another domain is invisible, and the listener says so."""
    with reserve_domain_id() as a, reserve_domain_id() as b:
        code, _, _ = run_pair(a.domain_id, b.domain_id, ros_log_dir, tmp_path / "none.json", timeout_s=4)
    assert code == 3
    assert set(json.loads((tmp_path / "none.json").read_text())) == {"pid", "env"}

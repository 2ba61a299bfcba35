"""The environment helper: every ROS process the project starts is loopback-only, in its own domain."""

from __future__ import annotations

import json
import subprocess
import sys

from lbi_ros.ros.environment import (
    DOMAIN_ID_RANGE,
    popen_ros,
    reserve_domain_id,
    ros_environment,
)

ENV_KEYS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS")


def test_environment_overrides_a_hostile_base(tmp_path):
    base = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_LOCALHOST_ONLY": "1",
            "ROS_STATIC_PEERS": "192.0.2.7", "ROS_DOMAIN_ID": "0", "PATH": "/usr/bin"}
    env = ros_environment(42, tmp_path, base=base)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["ROS_STATIC_PEERS"] == ""
    assert "ROS_LOCALHOST_ONLY" not in env
    assert env["ROS_DOMAIN_ID"] == "42"
    assert env["ROS_LOG_DIR"] == str(tmp_path)
    assert env["PATH"] == "/usr/bin"
    assert base["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"  # the caller's mapping is untouched


def test_every_started_process_is_loopback_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    script = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {ENV_KEYS!r}}}))"
    with reserve_domain_id() as reservation:
        for _ in range(2):
            proc = popen_ros(["python", "-c", script], reservation.domain_id, tmp_path, stdout=subprocess.PIPE)
            out, _ = proc.communicate(timeout=60)
            seen = json.loads(out)
            assert proc.returncode == 0
            assert seen["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
            assert seen["ROS_LOCALHOST_ONLY"] is None
            assert seen["ROS_DOMAIN_ID"] == str(reservation.domain_id)
            assert seen["ROS_LOG_DIR"] == str(tmp_path)


def test_domain_reservations_are_exclusive():
    held = [reserve_domain_id() for _ in range(3)]
    try:
        ids = [r.domain_id for r in held]
        assert len(set(ids)) == 3
        assert all(i in DOMAIN_ID_RANGE for i in ids)
        # another process cannot take an id held here
        probe = (
            "import fcntl, sys; from lbi_ros.ros import environment as e;"
            f"r = e.reserve_domain_id({ids[0]}); print(r.domain_id)"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
        assert int(out.stdout) not in ids
    finally:
        for r in held:
            r.release()


def test_invalid_domain_rejected():
    import pytest

    with pytest.raises(ValueError, match="0..101"):
        ros_environment(232)


def test_applied_environment_is_restored(monkeypatch, tmp_path):
    """Code that runs ROS inside a longer-lived process must not leave its domain behind."""
    from lbi_ros.ros.environment import ros_environment_applied

    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    with ros_environment_applied(42, tmp_path) as env:
        import os

        assert os.environ["ROS_DOMAIN_ID"] == "42" == env["ROS_DOMAIN_ID"]
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    import os

    assert os.environ["ROS_DOMAIN_ID"] == "7"


def test_started_processes_are_stopped_by_the_safety_net(tmp_path):
    from lbi_ros.ros.environment import stop_started_processes

    with reserve_domain_id() as reservation:
        proc = popen_ros(["python", "-c", "import time; time.sleep(600)"], reservation.domain_id, tmp_path)
        assert proc.pid in stop_started_processes(timeout_s=5)
    assert proc.poll() is not None


def test_the_large_frames_profile_is_valid_xml_and_what_every_process_gets(tmp_path):
    """config/fastdds_large_frames.xml parses, defines a default participant whose transports all exist, with a
    shared-memory segment that holds several 640x480 rgb8 frames; the environment (and so every started
    process) points Fast DDS at it, and the launch file passes it on."""
    import xml.etree.ElementTree as ElementTree
    from pathlib import Path

    from lbi_ros.ros.environment import PROFILE_VARIABLES, large_frames_profile

    profile = large_frames_profile()
    root_dir = Path(__file__).resolve().parents[1]
    assert profile == root_dir / "config" / "fastdds_large_frames.xml"
    ns = {"dds": "http://www.eprosima.com"}
    tree = ElementTree.parse(profile)
    descriptors = {d.findtext("dds:transport_id", namespaces=ns): d
                   for d in tree.iterfind(".//dds:transport_descriptor", ns)}
    participant = tree.find(".//dds:participant[@is_default_profile='true']", ns)
    assert participant is not None
    used = [t.text for t in participant.iterfind("dds:rtps/dds:userTransports/dds:transport_id", ns)]
    assert used and set(used) <= set(descriptors)
    shm = [d for name, d in descriptors.items() if name in used and d.findtext("dds:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("dds:segment_size", namespaces=ns)) >= 8 * 640 * 480 * 3

    env = ros_environment(42, tmp_path, base={"PATH": "/usr/bin"})
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile)
    assert not set(PROFILE_VARIABLES) & set(ros_environment(42, tmp_path, base=env, large_frames=False))
    own = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_dds.xml"}  # a profile the user chose is kept
    assert ros_environment(42, tmp_path, base=own)["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my_dds.xml"
    script = "import os; print(os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE'))"
    with reserve_domain_id() as reservation:
        proc = popen_ros(["python", "-c", script], reservation.domain_id, tmp_path, stdout=subprocess.PIPE, text=True,
                         env={"PATH": "/usr/bin"})
        assert proc.communicate(timeout=60)[0].strip() == str(profile)
    assert "fastdds_large_frames.xml" in (root_dir / "launch" / "lift.launch.py").read_text()


def test_a_copy_with_a_bigger_segment(tmp_path):
    from lbi_ros.ros.dds_shm import write_large_frames_profile

    text = write_large_frames_profile(tmp_path / "p.xml", 48 << 20).read_text()
    assert f"<segment_size>{48 << 20}</segment_size>" in text and text.count("<segment_size>") == 1

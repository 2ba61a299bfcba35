"""Shared fixtures.

At import, this test run reserves a ROS domain id of its own and sets this pytest process up as a
loopback-only ROS process (lbi_ros.ros.environment, the one place that decides it), so in-process
rclpy use in any test is as safe as the subprocesses the tests start.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lbi_ros.ros.environment import apply_ros_environment, reserve_domain_id, stop_started_processes

TEST_DIR = Path(__file__).resolve().parent
SESSION_DOMAIN = reserve_domain_id()  # held until this process exits
apply_ros_environment(SESSION_DOMAIN.domain_id)


def rclpy_available() -> bool:
    return importlib.util.find_spec("rclpy") is not None


requires_ros = pytest.mark.skipif(not rclpy_available(), reason="rclpy is not installed (run scripts/setup.sh)")


@pytest.fixture(scope="session")
def ros_domain() -> int:
    """The ROS_DOMAIN_ID held exclusively by this test run (also set in this process's environment)."""
    return SESSION_DOMAIN.domain_id


@pytest.fixture(scope="session")
def ros_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ros-log")


@pytest.fixture(scope="module")
def oracle_onnx(tmp_path_factory) -> Path:
    """The known-output ONNX lifter of test/node_harness.py (bad-input and start-up tests)."""
    pytest.importorskip("onnxruntime")
    from .node_harness import write_oracle_onnx

    return write_oracle_onnx(tmp_path_factory.mktemp("oracle") / "oracle.onnx")


def pytest_sessionfinish(session, exitstatus):
    """No ROS process a test started outlives the session, even when its fixture failed half-way."""
    leftovers = stop_started_processes()
    if leftovers:
        print(f"\nstopped {len(leftovers)} ROS process(es) left running by tests: {leftovers}")

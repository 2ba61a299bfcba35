"""Shared fixtures.

Prerequisites: :func:`require` / :func:`require_module` skip a test whose prerequisite (shipped weights,
rclpy, ONNX Runtime, ...) is missing on a developer machine, but **fail** it under CI (``CI=true``), where
scripts/setup.sh installs everything: a missing dependency must not turn the suite green by skipping. Only
``gpu``-marked tests skip everywhere; ``external_data`` tests (data this repository does not ship) are
deselected by scripts/test.sh instead of skipped.

At import, this test run reserves a ROS domain id of its own and sets this pytest process up as a
loopback-only ROS process (lbi_ros.ros.environment, the one place that decides it), so in-process
rclpy use in any test is as safe as the subprocesses the tests start.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from lbi_ros.ros.environment import apply_ros_environment, reserve_domain_id, stop_started_processes

TEST_DIR = Path(__file__).resolve().parent
SESSION_DOMAIN = reserve_domain_id()  # held until this process exits
apply_ros_environment(SESSION_DOMAIN.domain_id)


def under_ci() -> bool:
    """True on CI (``CI=true``, as GitHub Actions and GitLab set it)."""
    return os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false; under CI, fail it instead (module doc)."""
    if condition:
        return
    if under_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also at import time (require_module at module level)


def require_module(name: str, reason: str = "") -> ModuleType:
    """``pytest.importorskip`` that fails under CI: the imported module, or a skip/failure saying what is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        require(False, reason or f"{name} is not installed ({exc}); run scripts/setup.sh")
        raise  # not reached: require() skipped or failed


def require_pose_models() -> None:
    """The two BlazePose files ``scripts/setup.sh`` fetches, checked by sha256: skip without them, fail under CI."""
    from lbi_ros.pose2d.model_files import PoseModelFileError, model_path

    try:
        model_path("pose_detection.tflite")
        model_path("pose_landmark_full.tflite")
    except PoseModelFileError as exc:
        require(False, f"BlazePose model files missing (run scripts/setup.sh): {exc}")


def rclpy_available() -> bool:
    return importlib.util.find_spec("rclpy") is not None


# Without rclpy the test skips on a developer machine; under CI it runs and fails on the import.
requires_ros = pytest.mark.skipif(not rclpy_available() and not under_ci(),
                                  reason="rclpy is not installed (run scripts/setup.sh)")


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
    require_module("onnxruntime")
    from .node_harness import write_oracle_onnx

    return write_oracle_onnx(tmp_path_factory.mktemp("oracle") / "oracle.onnx")


def pytest_sessionfinish(session, exitstatus):
    """No ROS process a test started outlives the session, even when its fixture failed half-way."""
    leftovers = stop_started_processes()
    if leftovers:
        print(f"\nstopped {len(leftovers)} ROS process(es) left running by tests: {leftovers}")

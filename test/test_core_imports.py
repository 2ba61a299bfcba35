"""The core never imports ROS: every module outside lbi_ros/ros/ imports with rclpy and messages blocked."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lbi_ros

BLOCKED_PREFIXES = ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs",
                    "diagnostic_msgs", "tf2_msgs", "builtin_interfaces", "lbi_ros.msg")

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED_PREFIXES!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == p or name.startswith(p + ".") for p in BLOCKED):
            raise ImportError(f"blocked by test: core imported {{name}}")
        return None
sys.meta_path.insert(0, Blocker())
"""


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([lbi_ros.__path__[0]], prefix="lbi_ros."):
        if info.name.startswith(("lbi_ros.ros.", "lbi_ros.msg")) and info.name != "lbi_ros.ros.environment":
            continue
        names.append(info.name)
    return sorted(names)


def test_core_imports_without_ros():
    modules = core_modules()
    assert "lbi_ros.config" in modules and "lbi_ros.cli.main" in modules
    code = BLOCKER + "\nimport importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + (
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('rclpy',)]\n"
        "assert not loaded, loaded\nprint('ok', len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_blocker_really_blocks():
    """Guard against a vacuous pass: the same harness fails when a module imports rclpy."""
    code = BLOCKER + "\nimport rclpy\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "blocked by test" in result.stderr


GOOGLE_RUNTIMES = ("mediapipe", "tensorflow", "tflite_runtime", "ai_edge_litert", "jax", "jaxlib")


def test_built_in_detector_runs_without_google_runtimes():
    """Issue 15: the converted BlazePose nets are plain PyTorch/ONNX; detecting a person (model files read,
    converted, run) imports none of mediapipe, TensorFlow, a TFLite interpreter or jax. Those are blocked here,
    so a stray import fails the detection instead of passing unnoticed."""
    from .conftest import require_pose_models

    require_pose_models()
    blocker = BLOCKER.replace(repr(BLOCKED_PREFIXES), repr(GOOGLE_RUNTIMES))
    code = blocker + (
        "\nimport numpy as np, skimage.data\n"
        "from lbi_ros.pose2d.detector import DetectorConfig, PersonDetector\n"
        "people = PersonDetector(DetectorConfig(backend='torch')).detect(skimage.data.astronaut())\n"
        "assert len(people) == 1, people\n"
        f"loaded = [m for m in sys.modules if m.split('.')[0] in {GOOGLE_RUNTIMES!r}]\n"
        "assert not loaded, loaded\nprint('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]

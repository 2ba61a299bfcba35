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

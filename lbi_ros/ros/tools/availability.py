"""Is ROS 2 usable here? rclpy, its RMW and the message types the node needs (for ``lbi doctor``).

Returns plain ``(name, ok, detail)`` tuples so callers outside the ROS layer need no ROS import.
"""

from __future__ import annotations

import importlib

MESSAGE_TYPES: tuple[str, ...] = (
    "lbi_ros.msg.Person2DArray",
    "lbi_ros.msg.Skeleton3DArray",
    "tf2_msgs.msg.TFMessage",
    "sensor_msgs.msg.Image",
    "sensor_msgs.msg.CameraInfo",
    "visualization_msgs.msg.MarkerArray",
    "diagnostic_msgs.msg.DiagnosticArray",
)


def check_rclpy() -> list[tuple[str, bool, str]]:
    try:
        import rclpy  # noqa: F401
        from rclpy.utilities import get_rmw_implementation_identifier
    except Exception as exc:  # noqa: BLE001 - report any import failure verbatim
        detail = f"not importable: {type(exc).__name__}: {exc}"
        return [("rclpy", False, detail), ("rmw", False, "rclpy missing")]
    try:
        rmw = ("rmw", True, get_rmw_implementation_identifier())
    except Exception as exc:  # noqa: BLE001
        rmw = ("rmw", False, f"{type(exc).__name__}: {exc}")
    return [("rclpy", True, "importable"), rmw]


def check_messages() -> list[tuple[str, bool, str]]:
    results = []
    for dotted in MESSAGE_TYPES:
        module_name, _, cls_name = dotted.rpartition(".")
        try:
            getattr(importlib.import_module(module_name), cls_name)()
            results.append((dotted, True, "found"))
        except Exception as exc:  # noqa: BLE001
            results.append((dotted, False, f"{type(exc).__name__}: {exc}"))
    return results

"""Record topics to a ROS 2 MCAP file without rosbag2 (not on PyPI): raw CDR bytes + ``ros2msg`` schemas.

Subscriptions are ``raw=True``, so recording a 30 Hz camera costs no deserialisation. The schema of
each type is the standard concatenated ``.msg`` text (the type's own definition, then every nested
type after a ``MSG: pkg/Type`` separator), read from the ``share/<pkg>/msg/`` folders of the ament
prefixes, which is what ``ros2 bag`` writes and Foxglove / ``mcap`` tools read.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile

PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "string", "wstring"})
_SEPARATOR = "=" * 80


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(p) / "share" for p in prefixes]


def _msg_text(full_type: str) -> str:
    package, name = full_type.split("/")
    for share in _share_dirs():
        path = share / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"no definition of {full_type} under {[str(s) for s in _share_dirs()]}")


def _dependencies(full_type: str, text: str) -> list[str]:
    package = full_type.split("/")[0]
    deps = []
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2 or "=" in tokens[1] or (len(tokens) > 2 and tokens[2].startswith("=")):
            continue  # blank, comment or constant
        field_type = re.sub(r"<=?\d+|\[.*?\]", "", tokens[0])
        if field_type in PRIMITIVES:
            continue
        if field_type == "Header":
            field_type = "std_msgs/Header"
        deps.append(field_type if "/" in field_type else f"{package}/{field_type}")
    return deps


def message_definition(ros_type: str) -> str:
    """``'sensor_msgs/msg/Image'`` -> the ``ros2msg`` schema text with every nested definition."""
    package, _, name = ros_type.split("/")
    root = f"{package}/{name}"
    texts = {root: _msg_text(root)}
    order, queue = [], [root]
    while queue:
        current = queue.pop(0)
        for dep in _dependencies(current, texts[current]):
            if dep not in texts:
                texts[dep] = _msg_text(dep)
                order.append(dep)
                queue.append(dep)
    return "\n".join([texts[root]] + [f"{_SEPARATOR}\nMSG: {dep}\n{texts[dep]}" for dep in order])


def ros_type_name(msg_class: type) -> str:
    """A message class -> ``'pkg/msg/Type'``."""
    module = msg_class.__module__.split(".")
    return f"{module[0]}/msg/{msg_class.__name__}"


class McapRecorder:
    """Subscribes raw to ``topics`` ({name: (msg class, qos)}) and appends every message to ``path``."""

    def __init__(self, node: Node, path: str | Path, topics: dict[str, tuple[type, QoSProfile | int]]) -> None:
        from mcap.writer import Writer

        self.path = Path(path)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="lbi_ros")
        self.counts: dict[str, int] = {}
        schemas: dict[str, int] = {}
        for topic, (msg_class, qos) in topics.items():
            ros_type = ros_type_name(msg_class)
            if ros_type not in schemas:
                schemas[ros_type] = self._writer.register_schema(
                    name=ros_type, encoding="ros2msg", data=message_definition(ros_type).encode())
            channel = self._writer.register_channel(topic=node.resolve_topic_name(topic), message_encoding="cdr",
                                                    schema_id=schemas[ros_type])
            self.counts[topic] = 0
            node.create_subscription(msg_class, topic, self._callback(topic, channel), qos, raw=True)

    def _callback(self, topic: str, channel: int):
        def write(data: bytes) -> None:
            now = time.time_ns()
            self._writer.add_message(channel_id=channel, log_time=now, publish_time=now,
                                     sequence=self.counts[topic], data=data)
            self.counts[topic] += 1
        return write

    def close(self) -> None:
        self._writer.finish()
        self._file.close()

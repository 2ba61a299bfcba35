"""Skeletons -> visualization_msgs/MarkerArray for RViz, with ids stable per person.

Per person two markers share one namespace (``<prefix>/<person id>``): a SPHERE_LIST of joints (id 0)
and a LINE_LIST of bones (id 1), so RViz updates them in place frame after frame. A person who
disappears gets DELETE markers for both ids; a frame with nobody in it publishes one DELETEALL.
Invalid joints (missing in 2D) are drawn grey and their bones are left out.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from lbi_ros.pipeline import PersonLift

JOINT_MARKER_ID = 0
BONE_MARKER_ID = 1
INVALID_COLOR = ColorRGBA(r=0.6, g=0.6, b=0.6, a=0.6)


def person_color(person_id: str) -> ColorRGBA:
    """A bright colour derived from the id, the same on every frame and every run."""
    hue = int.from_bytes(hashlib.sha1(person_id.encode()).digest()[:2], "big") / 65535.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


class SkeletonMarkers:
    """Builds each frame's MarkerArray and remembers who was drawn, to delete those who left."""

    def __init__(self, parents: Sequence[int], namespace_prefix: str = "lbi", lifetime_s: float = 0.5,
                 joint_diameter_m: float = 0.05, bone_width_m: float = 0.02) -> None:
        self.bones = [(j, p) for j, p in enumerate(parents) if p >= 0]
        self.prefix = namespace_prefix
        self.lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
        self.joint_diameter_m = joint_diameter_m
        self.bone_width_m = bone_width_m
        self._drawn: set[str] = set()

    def namespace(self, person_id: str) -> str:
        return f"{self.prefix}/{person_id}"

    def build(self, header: Header, people: Sequence[PersonLift]) -> MarkerArray:
        array = MarkerArray()
        if not people:
            array.markers.append(Marker(header=header, action=Marker.DELETEALL))
            self._drawn.clear()
            return array
        current = {person.person_id for person in people}
        for gone in sorted(self._drawn - current):
            for marker_id in (JOINT_MARKER_ID, BONE_MARKER_ID):
                array.markers.append(Marker(header=header, ns=self.namespace(gone), id=marker_id,
                                            action=Marker.DELETE))
        for person in people:
            array.markers.extend(self._person_markers(header, person))
        self._drawn = current
        return array

    def _person_markers(self, header: Header, person: PersonLift) -> tuple[Marker, Marker]:
        color = person_color(person.person_id)
        points = [Point(x=x, y=y, z=z) for x, y, z in np.asarray(person.joints_cam_m, float).tolist()]
        joints = Marker(header=header, ns=self.namespace(person.person_id), id=JOINT_MARKER_ID,
                        type=Marker.SPHERE_LIST, action=Marker.ADD, lifetime=self.lifetime)
        joints.pose.orientation.w = 1.0
        joints.scale.x = joints.scale.y = joints.scale.z = self.joint_diameter_m
        joints.points = points
        valid = np.asarray(person.valid, bool).tolist()
        joints.colors = [color if ok else INVALID_COLOR for ok in valid]
        bones = Marker(header=header, ns=self.namespace(person.person_id), id=BONE_MARKER_ID,
                       type=Marker.LINE_LIST, action=Marker.ADD, lifetime=self.lifetime, color=color)
        bones.pose.orientation.w = 1.0
        bones.scale.x = self.bone_width_m
        bones.points = [point for child, parent in self.bones if valid[child] and valid[parent]
                        for point in (points[parent], points[child])]
        return joints, bones

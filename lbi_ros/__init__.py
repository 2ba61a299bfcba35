"""lbi_ros: lift 2D human keypoints to metric camera-frame 3D skeletons with Lifting by Image (LBI).

This top-level module stays import-light on purpose: ``from lbi_ros.msg import ...`` must work for
consumers of the message types without pulling in torch, and the core never imports rclpy.

The message build (``scripts/setup.sh`` without a ROS install, or colcon with one) installs the
generated ``lbi_ros.msg`` modules and their typesupport libraries into an ``lbi_ros`` folder in
site-packages, while the Python sources may live elsewhere (an editable install or a source
checkout). ``extend_path`` merges every ``lbi_ros`` folder on ``sys.path`` into this package so both
halves import as one package, exactly as they do in a colcon install where they share a folder.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)  # noqa: F821 - package __path__ is set by the import system

__version__ = "0.1.0"

"""lbi_ros: lift 2D human keypoints to metric camera-frame 3D skeletons with Lifting by Image (LBI).

This top-level module stays import-light on purpose: ``from lbi_ros.msg import ...`` must work for
consumers of the message types without pulling in torch, and the core never imports rclpy.

Where the generated message modules live:
- with a ROS install, colcon installs ``lbi_ros.msg`` and the Python sources into one folder;
- without one, ``scripts/setup.sh`` installs the generated half into ``<venv>/lib/lbi_ros_generated``
  (off ``sys.path``, so it cannot shadow these sources in an editable install) and this module
  appends that folder to the package path, so both halves import as one package.
"""

import sys
from pathlib import Path
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)  # noqa: F821 - package __path__ is set by the import system

GENERATED_MESSAGES_DIR = Path(sys.prefix) / "lib" / "lbi_ros_generated" / "lbi_ros"
if GENERATED_MESSAGES_DIR.is_dir() and str(GENERATED_MESSAGES_DIR) not in __path__:
    __path__.append(str(GENERATED_MESSAGES_DIR))

__version__ = "0.1.0"

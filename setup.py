"""pip/setuptools entry (the metadata lives in pyproject.toml).

With a ROS install, colcon builds this repository as the ament_cmake package described in
package.xml/CMakeLists.txt (messages plus this Python package); pip uses this file in the no-ROS venv.
"""

from setuptools import setup

setup()

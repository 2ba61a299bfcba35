# Only for builds against the ROS 2 wheels from PyPI (scripts/setup.sh passes -DLBI_ROS_PIP_WHEELS=ON).
# Those wheels were built in a manylinux container: their exported *__rosidl_generator_py targets
# name that container's /opt/python/cp3XX include dirs, which do not exist here, and CMake stops at
# "Generate" with "includes non-existent path". Point them at this interpreter's headers and NumPy.
# A real ROS install never needs this.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
get_property(_lbi_imported_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_lbi_target IN LISTS _lbi_imported_targets)
  if(_lbi_target MATCHES "__rosidl_generator_py$")
    set_target_properties(${_lbi_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
      "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()
endforeach()

#!/usr/bin/env bash
# Set up everything lbi_ros needs without a ROS install, idempotently:
#   1. system tools the message build needs (cmake, g++, make, Python headers, venv) via apt if missing;
#   2. .venv with the pinned Python dependencies (torch CPU, ONNX Runtime, ROS 2 Kilted wheels, ...);
#   3. the project's message types (and tf2_msgs/TFMessage when no ROS provides it) built with
#      ament_cmake + rosidl into the venv, cached on a key of the sources, Python and ROS wheel versions;
#   4. an editable install of lbi_ros (the `lbi` command);
#   5. the two BlazePose model files (person detector, landmark model) from the pinned mediapipe wheel on
#      PyPI, checked by sha256 into $LBI_CACHE/pose_models (lbi_ros/pose2d/model_files.py; or supplied by
#      hand in $LBI_POSE_MODELS_DIR).
# A second run checks the stamps and returns in seconds.
#
# Environment: PYTHON (interpreter, default python3), LBI_VENV (default <repo>/.venv),
#              LBI_CACHE (default <repo>/.cache), PIP_EXTRA (extra pip arguments),
#              LBI_TORCH=system (keep the torch the venv already has, e.g. NVIDIA's JetPack build on a
#              Jetson: requirements are installed without torch and with that torch pinned as a constraint,
#              so pip can neither replace nor upgrade it; docs/deployment.md, "Jetson recipe").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${LBI_VENV:-$ROOT/.venv}"
CACHE="${LBI_CACHE:-$ROOT/.cache}"
log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 0. interpreter -----------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11+ (apt-get install python3)"
"$PYTHON" - <<'EOF' || die "Python 3.10-3.13 is required (the ROS 2 wheels exist for cp310-cp313)"
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)
EOF

# --- 1. system tools ----------------------------------------------------------------------------
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
    sudo="sudo"
  fi
  command -v apt-get >/dev/null || die "missing $* and apt-get is not available: install them by hand"
  log "apt-get install $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing+=("python3-dev")
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3-venv")
# Headless OpenGL (EGL + Mesa's software rasteriser) for the mesh-body renderer (lbi_ros/render/mesh/mesh_raster.py).
for lib in libEGL.so.1 libEGL_mesa.so.0; do
  compgen -G "/usr/lib/*/$lib" >/dev/null || compgen -G "/usr/lib64/$lib" >/dev/null \
    || { missing+=("libegl1" "libegl-mesa0"); break; }
done
compgen -G "/usr/lib/*/dri/swrast_dri.so" >/dev/null || compgen -G "/usr/lib/*/dri/libdril_dri.so" >/dev/null \
  || missing+=("libgl1-mesa-dri")
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
cmake_version=$(cmake --version | head -1 | awk '{print $3}')
"$PYTHON" -c "import sys; v=tuple(map(int,'$cmake_version'.split('.')[:2])); sys.exit(v < (3, 21))" \
  || die "cmake >= 3.21 is required for the message build (found $cmake_version)"

# --- 2. venv and pinned dependencies --------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
hash_files() { cat "$@" | sha256sum | cut -c1-16; }
py_version=$("$VPY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
LBI_TORCH="${LBI_TORCH:-pypi}"
case "$LBI_TORCH" in pypi|system) ;; *) die "LBI_TORCH must be pypi (default) or system, got '$LBI_TORCH'" ;; esac
torch_key=""
if [ "$LBI_TORCH" = system ]; then torch_key="-torch-system"; fi
req_key="$(hash_files "$ROOT"/requirements/*.txt)-$py_version$torch_key"
if [ "$(cat "$VENV/.lbi-requirements-key" 2>/dev/null)" != "$req_key" ]; then
  log "installing pinned dependencies (requirements/*.txt)"
  core="$ROOT/requirements/core.txt"
  torch_pin=()
  if [ "$LBI_TORCH" = "system" ]; then
    system_torch=$("$VPY" -c 'import torch; print(torch.__version__)' 2>/dev/null) \
      || die "LBI_TORCH=system but $VPY cannot import torch: install NVIDIA's JetPack build first (docs/deployment.md)"
    log "keeping torch $system_torch (LBI_TORCH=system); requirements without the PyPI torch pin"
    mkdir -p "$VENV/.lbi"
    grep -vE '^torch==' "$ROOT/requirements/core.txt" > "$VENV/.lbi/core-without-torch.txt"
    echo "torch==$system_torch" > "$VENV/.lbi/torch-constraint.txt"
    core="$VENV/.lbi/core-without-torch.txt"
    torch_pin=(-c "$VENV/.lbi/torch-constraint.txt")
  else
    # torch first and alone: its exact pin takes the CPU build; a later resolver pass must not pull CUDA.
    "$VPY" -m pip install -q ${PIP_EXTRA:-} "$(grep -E '^torch==' "$ROOT/requirements/core.txt")"
  fi
  "$VPY" -m pip install -q ${PIP_EXTRA:-} "${torch_pin[@]}" -r "$core" -r "$ROOT/requirements/ros.txt" \
    -r "$ROOT/requirements/build.txt" -r "$ROOT/requirements/dev.txt" -r "$ROOT/requirements/deploy.txt" \
    -r "$ROOT/requirements/bodies.txt"
  echo "$req_key" > "$VENV/.lbi-requirements-key"
else
  log "dependencies up to date"
fi

# --- 3. message types -----------------------------------------------------------------------------
ros_versions=$("$VPY" -m pip freeze 2>/dev/null | grep -E '^ros-' | sort | sha256sum | cut -c1-16)
msg_key="$(hash_files "$ROOT"/msg/*.msg "$ROOT/CMakeLists.txt" "$ROOT/package.xml" \
  "$ROOT"/cmake/*.cmake "$ROOT"/interfaces/tf2_msgs/msg/*.msg "$ROOT"/interfaces/tf2_msgs/CMakeLists.txt \
  "$ROOT/scripts/setup.sh")-py$py_version-ros$ros_versions"
msgs_ok() {
  (cd / && "$VPY" -c 'import rclpy; from lbi_ros.msg import Person2DArray, Skeleton3DArray; from tf2_msgs.msg import TFMessage') \
    >/dev/null 2>&1
}
# the editable install first: the import check above needs lbi_ros itself
if ! (cd / && "$VPY" -c 'import lbi_ros.cli.main') >/dev/null 2>&1 || [ ! -x "$VENV/bin/lbi" ]; then
  log "installing lbi_ros (editable)"
  "$VPY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
fi
tarball="$CACHE/msgs/$msg_key.tar.gz"
if [ "$(cat "$VENV/.lbi-msgs-key" 2>/dev/null)" = "$msg_key" ] && msgs_ok; then
  log "message types up to date"
elif [ -f "$tarball" ]; then
  log "restoring message types from $tarball"
  tar xzf "$tarball" -C "$VENV"
  echo "$msg_key" > "$VENV/.lbi-msgs-key"
else
  log "building message types (ament_cmake + rosidl, ~20 s)"
  build="$ROOT/build/msgs"
  rm -rf "$build"
  export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
  packages=()
  # tf2_msgs only where nothing provides it (a sourced ROS install does).
  (cd / && "$VPY" -c 'import tf2_msgs.msg' >/dev/null 2>&1) || packages+=("tf2_msgs:$ROOT/interfaces/tf2_msgs:")
  # lbi_ros's generated Python goes off sys.path (see lbi_ros/__init__.py for why).
  packages+=("lbi_ros:$ROOT:-DLBI_ROS_INSTALL_PYTHON=OFF -DPYTHON_INSTALL_DIR=lib/lbi_ros_generated")
  manifest="$build/manifest.txt"
  mkdir -p "$build"; : > "$manifest"
  for entry in "${packages[@]}"; do
    IFS=: read -r name src extra <<<"$entry"
    # shellcheck disable=SC2086  # $extra holds several -D flags
    cmake -S "$src" -B "$build/$name" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_BUILD_TYPE=Release \
      -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF -DLBI_ROS_PIP_WHEELS=ON $extra \
      >"$build/$name.log" 2>&1 || { tail -40 "$build/$name.log"; die "cmake configure of $name failed"; }
    cmake --build "$build/$name" -j"$(nproc)" >>"$build/$name.log" 2>&1 \
      || { tail -40 "$build/$name.log"; die "build of $name failed"; }
    cmake --install "$build/$name" >>"$build/$name.log" 2>&1 || die "install of $name failed"
    # install_manifest.txt has no trailing newline: add one so the next package's first path stays separate
    { sed "s|^$VENV/||" "$build/$name/install_manifest.txt"; echo; } | grep -v '^$' >> "$manifest"
  done
  mkdir -p "$CACHE/msgs"
  if tar czf "$tarball.tmp" -C "$VENV" -T "$manifest"; then
    mv "$tarball.tmp" "$tarball"
  else
    rm -f "$tarball.tmp"
    log "warning: could not cache the message build (the next fresh venv rebuilds it)"
  fi
  echo "$msg_key" > "$VENV/.lbi-msgs-key"
fi
msgs_ok || die "message types do not import from $VPY (see build/msgs/*.log)"

# --- 5. BlazePose model files ---------------------------------------------------------------------
# Idempotent: files already cached with the pinned sha256 are kept, so a second run reads ~9 MB and
# downloads nothing. On failure the module prints what is missing and how to supply the files by hand.
if ! (cd / && LBI_CACHE="$CACHE" "$VPY" -m lbi_ros.pose2d.model_files fetch >/dev/null); then
  die "could not get the BlazePose model files (see the message above)"
fi
log "BlazePose model files verified"
log "ready: $VENV (activate with: . $VENV/bin/activate)"

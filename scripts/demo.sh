#!/usr/bin/env bash
# The project's main command (README). Sets up (idempotent), then runs the main job.
# Until the one-command ROS demo lands (issue: the ROS 2 node and demo), the main job is
# `lbi doctor`: a true report of what this machine can run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
exec "${LBI_VENV:-$ROOT/.venv}/bin/lbi" doctor "$@"

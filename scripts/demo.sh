#!/usr/bin/env bash
# The project's main command (README): set up (idempotent), then run the one-command demo, a real
# ROS 2 graph on loopback (player -> lifter node with the shipped default weights -> recorder). It
# prints accuracy and latency and writes out/demo/demo.png and out/demo/demo.json.
# Extra arguments go to `lbi demo` (e.g. --backend torch, --frames 60).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
exec "${LBI_VENV:-$ROOT/.venv}/bin/lbi" demo --out "$ROOT/out/demo" "$@"

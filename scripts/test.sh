#!/usr/bin/env bash
# The project's test command (README, CI): set up (idempotent), lint, then the default test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k smoke, or -m slow for the long tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
VENV="${LBI_VENV:-$ROOT/.venv}"
echo "[test] ruff check" >&2
"$VENV/bin/ruff" check lbi_ros test
marker=(-m "not slow and not external_data")
for arg in "$@"; do [ "$arg" = "-m" ] && marker=(); done
if [ ${#marker[@]} -gt 0 ]; then
  echo "[test] deselected by default: slow tests and external_data tests (need data the repo does not ship," \
    "e.g. LBI_BODIES_DIR); run them with -m slow / -m external_data" >&2
fi
echo "[test] pytest" >&2
set +e
"$VENV/bin/python" -m pytest "${marker[@]}" "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "[test] ERROR: pytest collected no tests (exit 5): treating as a failure" >&2
  exit 1
fi
exit $rc

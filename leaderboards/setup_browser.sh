#!/usr/bin/env bash
# Install what the browser tests (pytest -m browser) need: Debian's chromium
# and Playwright for Python. Idempotent: does nothing when both are present.
# Playwright's own browser download is not used (it is blocked in CI); the
# tests launch /usr/bin/chromium via executable_path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
  "$PY" -m pip install -q playwright
fi

/usr/bin/chromium --version 2>/dev/null  # its wrapper script warns on stderr
"$PY" -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"

#!/usr/bin/env bash
# Install what the browser tests need, if missing: Debian's chromium and Playwright for
# Python (used only as a driver of that chromium; no browser download).
# Usage: scripts/install-browser.sh [path/to/venv]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}

if ! command -v chromium >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "chromium is missing: run 'sudo apt-get install chromium' (Debian)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
    # The package ships its own driver (Node); browsers come from Debian, never downloaded.
    "$VENV/bin/pip" install -q --disable-pip-version-check playwright
fi

echo "browser: $(chromium --version 2>/dev/null || echo 'chromium not runnable')"

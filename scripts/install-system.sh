#!/usr/bin/env bash
# Install the Debian packages the project needs, only those that are missing.
# PostgreSQL and PgBouncer run the cluster, wrk drives the benchmark, Chromium the browser
# tests, curl the make targets. Without root it only says what to install.
set -euo pipefail

declare -A probe=(
    [postgresql]="ls /usr/lib/postgresql/*/bin/initdb"
    [pgbouncer]="command -v pgbouncer || test -x /usr/sbin/pgbouncer"
    [wrk]="command -v wrk"
    [chromium]="command -v chromium"
    [curl]="command -v curl"
    [python3-venv]="python3 -m venv --help"
)
missing=()
for pkg in "${!probe[@]}"; do
    bash -c "${probe[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "missing system packages; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

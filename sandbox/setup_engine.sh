#!/bin/sh
# Idempotent: install docker.io + debootstrap if missing, start dockerd if it
# is not running, and wait until `docker info` answers.  Run as root (sudo).
#   sudo sandbox/setup_engine.sh
set -eu

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n sh "$0" "$@"
    fi
    echo "setup_engine.sh must run as root (try: sudo $0)" >&2
    exit 1
fi

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing ca-certificates iptables
fi

if docker info >/dev/null 2>&1; then
    echo "docker engine already running"
    exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then
        echo "started docker via systemd"
    else
        echo "starting dockerd (log: /var/log/evalsuite-dockerd.log)"
        # its own session: the daemon outlives the shell (and process group) that started it
        setsid nohup dockerd >/var/log/evalsuite-dockerd.log 2>&1 </dev/null &
    fi
fi

i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        echo "dockerd did not become ready in 60s; see /var/log/evalsuite-dockerd.log" >&2
        tail -n 20 /var/log/evalsuite-dockerd.log >&2 2>/dev/null || true
        exit 1
    fi
    sleep 1
done
echo "docker engine ready"

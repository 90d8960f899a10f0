#!/usr/bin/env bash
# Start, stop or restart the API server (gunicorn, gevent workers) in the background.
# Usage: scripts/api.sh start [--reload] | stop | restart | status
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=var/run
LOG=var/log/api.log
PID_FILE=$RUN_DIR/api.pid
PORT=${PORT:-8080}
mkdir -p "$RUN_DIR" var/log

running() { [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

start() {
    if running; then echo "api: already running (pid $(cat "$PID_FILE")) on :$PORT"; return; fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    .venv/bin/gunicorn -c messenger/gunicorn.conf.py --daemon --pid "$PID_FILE" \
        --error-logfile "$LOG" "$@"
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
            echo "api: running (pid $(cat "$PID_FILE")) on http://127.0.0.1:$PORT"; return
        fi
        sleep 0.1
    done
    echo "api: did not answer on :$PORT; last log lines:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
}

stop() {
    if ! running; then echo "api: not running"; rm -f "$PID_FILE"; return; fi
    local pid; pid=$(cat "$PID_FILE")
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$PID_FILE"
    echo "api: stopped"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    restart)
        shift
        if running; then
            # HUP: gunicorn starts new workers (new code, same listening socket) and lets
            # the old ones finish their requests, so clients see no gap.
            kill -HUP "$(cat "$PID_FILE")"
            echo "api: reloaded (pid $(cat "$PID_FILE")) on :$PORT"
        else
            start "$@"
        fi ;;
    status) if running; then echo "api: running (pid $(cat "$PID_FILE"))"; else echo "api: stopped"; fi ;;
    *) echo "usage: $0 start [--reload]|stop|restart|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start, stop or restart the API server (gunicorn, gevent workers) in the background.
# Usage: scripts/api.sh start [--reload] | stop | restart | status
#
# restart keeps serving: USR2 makes gunicorn exec a new master that inherits the listening
# socket; once all its workers are ready (messenger/lifecycle.py writes api-<pid>.ready)
# the old master gets TERM and finishes what it holds. The new master runs with the
# caller's environment, so `LOG_FORMAT=json make restart` changes a setting. If the new
# master fails, it is stopped and the old one keeps serving.
set -euo pipefail
cd "$(dirname "$0")/.."
export API_RUN_DIR=${API_RUN_DIR:-$PWD/var/run}
LOG=${API_LOG:-var/log/api.log}
PID_FILE=$API_RUN_DIR/api.pid
PORT=${PORT:-8080}
READY_TIMEOUT=${API_READY_TIMEOUT:-60}
STOP_TIMEOUT=$((${GRACEFUL_TIMEOUT:-10} + 5))
mkdir -p "$API_RUN_DIR" "$(dirname "$LOG")"

pid_in() { cat "$1" 2>/dev/null || true; }
alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
running() { alive "$(pid_in "$PID_FILE")"; }

# Who listens on $PORT (any address), as ss names it; empty when nobody does.
port_owner() {
    if command -v ss >/dev/null; then
        ss -Hltnp "sport = :$PORT" | head -n 1 | sed 's/.*users://'
    elif (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "another process"
    fi
}

fail() {
    echo "$1; last log lines:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
}

# Wait until master $1 has all its workers ready (Django loaded, first health refresh done).
wait_ready() {
    local pid=$1 deadline=$((SECONDS + READY_TIMEOUT)) workers ready
    while ((SECONDS < deadline)); do
        alive "$pid" || return 1
        workers=$(cat "$API_RUN_DIR/api-$pid.workers" 2>/dev/null || echo 0)
        ready=$( (wc -l <"$API_RUN_DIR/api-$pid.ready") 2>/dev/null || echo 0)
        if ((workers > 0 && ready >= workers)); then return 0; fi
        sleep 0.05
    done
    return 1
}

wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    ! alive "$pid"
}

start() {
    if running; then echo "api: already running (pid $(pid_in "$PID_FILE")) on :$PORT"; return; fi
    local owner
    owner=$(port_owner)
    if [[ -n $owner ]]; then
        echo "api: port $PORT is taken by $owner; not starting (set PORT or stop it)" >&2
        exit 1
    fi
    rm -f "$PID_FILE"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    .venv/bin/gunicorn -c messenger/gunicorn.conf.py --daemon --pid "$PID_FILE" \
        --error-logfile "$LOG" "$@"
    local deadline=$((SECONDS + READY_TIMEOUT)) pid=""
    while [[ -z $pid ]] && ((SECONDS < deadline)); do pid=$(pid_in "$PID_FILE"); sleep 0.05; done
    [[ -n $pid ]] || fail "api: gunicorn wrote no pid file"
    wait_ready "$pid" || fail "api: gunicorn (pid $pid) did not get ready on :$PORT"
    echo "api: running (pid $pid) on http://127.0.0.1:$PORT"
}

stop() {
    if ! running; then echo "api: not running"; rm -f "$PID_FILE"; return; fi
    local pid
    pid=$(pid_in "$PID_FILE")
    kill -TERM "$pid"
    wait_exit "$pid" "$STOP_TIMEOUT" || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PID_FILE" "$API_RUN_DIR/api-$pid".* "$API_RUN_DIR/gunicorn-$pid.ctl"
    echo "api: stopped"
}

restart() {
    if ! running; then start "$@"; return; fi
    local old new="" deadline
    old=$(pid_in "$PID_FILE")
    if alive "$(pid_in "$PID_FILE.2")"; then
        echo "api: a restart is already under way (pid $(pid_in "$PID_FILE.2"))" >&2
        exit 1
    fi
    rm -f "$PID_FILE.2"
    (umask 077 && env -0 >"$API_RUN_DIR/api.env")  # read by the new master (pre_exec)
    kill -USR2 "$old"
    deadline=$((SECONDS + READY_TIMEOUT))
    while [[ -z $new ]] && ((SECONDS < deadline)); do new=$(pid_in "$PID_FILE.2"); sleep 0.05; done
    if [[ -z $new ]] || ! wait_ready "$new"; then
        [[ -n $new ]] && kill -TERM "$new" 2>/dev/null
        rm -f "$API_RUN_DIR/api.env"
        fail "api: the new server did not get ready; still serving with pid $old"
    fi
    kill -TERM "$old"  # stops taking connections, finishes those it holds
    wait_exit "$old" "$STOP_TIMEOUT" || kill -KILL "$old" 2>/dev/null || true
    rm -f "$API_RUN_DIR/api-$old".* "$API_RUN_DIR/gunicorn-$old.ctl"
    # The new master renames api.pid.2 to api.pid when it sees its parent gone (≤ 1 s).
    deadline=$((SECONDS + 5))
    while [[ $(pid_in "$PID_FILE") != "$new" ]] && ((SECONDS < deadline)); do sleep 0.05; done
    echo "api: restarted (pid $new, was $old) on http://127.0.0.1:$PORT"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    restart) shift; restart "$@" ;;
    status)
        if running; then
            pid=$(pid_in "$PID_FILE")
            echo "api: running (pid $pid) on :$PORT, control socket $API_RUN_DIR/gunicorn-$pid.ctl"
        else echo "api: stopped"; fi ;;
    *) echo "usage: $0 start [--reload]|stop|restart|status" >&2; exit 2 ;;
esac

"""The API server started the documented way (scripts/api.sh: gunicorn --daemon): its logs,
restarts under load, a stop under load, a taken port (issue 11, items 18-21).

These tests start their own daemon on LIFECYCLE_API_PORT (default TEST_API_PORT + 2) with
its pid file, control socket and log under the test's tmp_path."""

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

from shards.routing import shard_for_user_id
from tests.conftest import API_PORT, api_env
from tests.restart_load import LoadGroup

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("LIFECYCLE_API_PORT", str(API_PORT + 2)))
MAX_GAP = 0.2  # seconds without any answer that a restart may cause at most


class Daemon:
    """scripts/api.sh for one server: `api("start")`, `api("restart", LOG_FORMAT="json")`."""

    def __init__(self, tmp_path: Path, port: int = PORT) -> None:
        self.port = port
        self.run_dir = tmp_path / "run"
        self.log = tmp_path / "api.log"
        self.base_url = f"http://127.0.0.1:{port}"
        self.extra: dict[str, str] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **api_env(self.port),
            "API_RUN_DIR": str(self.run_dir),
            "API_LOG": str(self.log),
            "LOG_LEVEL": "info",
            **self.extra,
            **extra,
        }

    def api(self, command: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
        if extra and command in ("start", "restart"):
            self.extra.update(extra)  # what the server now runs with
        done = subprocess.run(
            ["scripts/api.sh", command],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def master_pid(self) -> int:
        return int((self.run_dir / "api.pid").read_text())

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def daemon(django_db_setup, tmp_path):
    server = Daemon(tmp_path)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", PORT)) != 0, f"port {PORT} is busy"
    yield server
    server.api("stop", check=False)


def _user_id_on(shard: int) -> str:
    while True:
        user_id = str(uuid.uuid4())
        if shard_for_user_id(user_id, 5) == shard:
            return user_id


# --- item 18: logs ------------------------------------------------------------------------
def test_the_app_log_lines_of_a_daemon_reach_its_log_file_with_the_request_id(daemon):
    control = api_env(PORT)["DATABASE_URL"]
    daemon.api(
        "start",
        ACCESS_LOG="-",
        # shard 0 is down (nothing listens there); shard 1 is a database without the users
        # table, so reading from it is a 500 with a traceback.
        SHARD_0_URL="postgres://postgres@127.0.0.1:9/none",
        SHARD_0_REPLICA_URL="postgres://postgres@127.0.0.1:9/none",
        SHARD_1_URL=control,
        SHARD_1_REPLICA_URL=control,
    )
    broken = requests.get(
        f"{daemon.base_url}/api/v1/users/{_user_id_on(1)}", headers={"X-Request-ID": "rid-500"}
    )
    assert broken.status_code == 500
    assert broken.headers["X-Request-ID"] == "rid-500"
    fresh = requests.get(f"{daemon.base_url}/health")
    assert len(fresh.headers["X-Request-ID"]) == 32  # made by the server
    forged = requests.get(f"{daemon.base_url}/health", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["X-Request-ID"] != "a b\tc"
    time.sleep(0.5)
    text = daemon.log.read_text()
    assert "shard_0 is down" in text  # a warning of the health monitor
    traceback = [line for line in daemon.log_lines() if "[rid-500]" in line]
    assert any("[ERROR]" in line for line in traceback), text[-3000:]
    assert 'relation "users" does not exist' in text  # the traceback's last line
    access = [line for line in daemon.log_lines() if '"GET /api/v1/users/' in line]
    assert any(" 500 " in line and "rid-500" in line for line in access), access


def test_log_format_json_makes_every_line_a_json_object(daemon):
    daemon.api("start", LOG_FORMAT="json", ACCESS_LOG="-")
    requests.get(f"{daemon.base_url}/api/v1/users/x", headers={"X-Request-ID": "rid-json"})
    time.sleep(0.5)
    lines = [json.loads(line) for line in daemon.log_lines() if line.strip()]
    assert {"gunicorn.error", "django.request", "gunicorn.access"} <= {x["logger"] for x in lines}
    access = next(x for x in lines if x["logger"] == "gunicorn.access")
    assert access["request_id"] == "rid-json" and access["status"] == "404"
    not_found = next(x for x in lines if x["logger"] == "django.request")
    assert not_found["request_id"] == "rid-json" and not_found["level"] == "WARNING"


# --- item 21: a taken port, control sockets ---------------------------------------------------
def test_start_refuses_a_port_taken_by_another_process_and_names_it(daemon):
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", PORT))
        other.listen()
        done = daemon.api("start", check=False)
    assert done.returncode != 0
    assert f"port {PORT} is taken by" in done.stderr and f"pid={os.getpid()}" in done.stderr
    assert "running" not in done.stdout


def test_each_server_has_its_own_control_socket_and_stopping_one_keeps_the_others(daemon, tmp_path):
    other = Daemon(tmp_path / "other", port=PORT + 1)
    daemon.api("start")
    try:
        other.api("start")
        mine = daemon.run_dir / f"gunicorn-{daemon.master_pid()}.ctl"
        theirs = other.run_dir / f"gunicorn-{other.master_pid()}.ctl"
        assert mine.is_socket() and theirs.is_socket()
        other.api("stop")
        assert mine.is_socket()
        status = subprocess.run(
            [str(ROOT / ".venv/bin/gunicornc"), "-s", str(mine), "-c", "show workers"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
    finally:
        other.api("stop", check=False)


# --- items 19 and 20: restart and stop under load --------------------------------------------
def test_restarts_under_load_lose_nothing_refuse_nothing_and_never_pause(daemon):
    daemon.api("start")
    first = daemon.master_pid()
    group = LoadGroup(daemon.base_url).start()
    time.sleep(1.5)
    marks = [time.monotonic()]
    daemon.api("restart")
    marks.append(time.monotonic())
    time.sleep(1.5)
    # A changed setting takes effect: JSON logs and three workers instead of two.
    marks.append(time.monotonic())
    daemon.api("restart", LOG_FORMAT="json", WEB_CONCURRENCY="3")
    marks.append(time.monotonic())
    time.sleep(1.5)
    load = group.stop()
    print(load.summary(), "restarts (s):", [round(t - load.started, 2) for t in marks])
    assert daemon.master_pid() != first
    assert load.count("refused", "reset", "closed", "timeout") == 0, load.errors
    assert load.server_errors() == 0, load.outcomes
    assert load.longest_gap() < MAX_GAP, load.summary()
    assert load.lost_writes() == []
    assert load.count(404) == 0, "a read with its write's token missed the write (stale)"
    assert load.slowest[0] < settings.DB_TIMEOUT + 1, load.summary()
    json.loads(daemon.log_lines()[-1])  # the new master logs JSON
    workers = (daemon.run_dir / f"api-{daemon.master_pid()}.workers").read_text()
    assert workers.strip() == "3"


def test_sigterm_under_load_answers_or_refuses_and_never_resets(daemon):
    daemon.api("start")
    master = daemon.master_pid()
    group = LoadGroup(daemon.base_url).start()
    time.sleep(1.5)
    os.kill(master, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(master, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # clients keep trying: the port is closed now
    load = group.stop()
    print(load.summary())
    assert load.count("reset", "closed", "timeout") == 0, load.errors
    assert load.server_errors() == 0, load.outcomes
    assert load.count(201) > 0 and load.count("refused") > 0
    assert load.count(404) == 0, "a read with its write's token missed the write (stale)"
    assert load.slowest[0] < settings.DB_TIMEOUT + 1, load.summary()
    daemon.api("start")
    assert load.lost_writes() == []

"""The load tests, tested: their checks catch what they claim to catch, a stale read fails a
run, and the smoke scenario (`make loadtest-smoke`, shortened) passes against the real server.

Locust runs in a subprocess only: importing it here would monkey-patch the test process with
gevent. The checks live in loadtest/checks.py, which does not import locust."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loadtest.checks import CONSISTENCY, Walk, next_query, page_problem, user_problem
from loadtest.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_user(seconds: int, name: str = "Ada") -> dict:
    moment = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "email": f"{uuid.uuid4().hex}@example.com",
        "created_at": moment,
        "updated_at": moment,
    }


def page(rows: list[dict], more: bool = False) -> dict:
    return {"results": rows, "next": "http://h/api/v1/users/?cursor=abc&limit=2" if more else None}


# --------------------------------------------------------------------------- the checks


def test_a_user_with_an_unknown_or_missing_field_is_refused():
    user = a_user(1)
    assert user_problem(user) is None
    assert user_problem({**user, "password": "x"}) is not None
    assert user_problem({k: v for k, v in user.items() if k != "updated_at"}) is not None


def test_a_page_must_be_strictly_newest_first_and_within_its_limit():
    older, newer = a_user(1), a_user(2)
    assert page_problem(page([newer, older]), limit=2) is None
    assert "newest first" in page_problem(page([older, newer]), limit=2)
    assert "limit" in page_problem(page([newer, older]), limit=1)


def test_a_row_seen_twice_in_one_walk_is_a_consistency_violation():
    rows = [a_user(4), a_user(3), a_user(2)]
    walk = Walk({})
    assert walk.take(page(rows[:2], more=True)) is None
    assert CONSISTENCY in walk.take(page([rows[1], rows[2]]))


def test_rows_out_of_order_across_pages_are_a_consistency_violation():
    walk = Walk({})
    assert walk.take(page([a_user(4), a_user(3)], more=True)) is None
    assert CONSISTENCY in walk.take(page([a_user(5)]))


def test_a_walk_that_passes_a_committed_row_without_showing_it_is_a_consistency_violation():
    marker = a_user(3)
    walk = Walk({marker["id"]: marker})
    assert walk.take(page([a_user(5), a_user(4)], more=True)) is None  # not passed yet
    assert CONSISTENCY in walk.take(page([a_user(2), a_user(1)], more=True))


def test_a_walk_that_ends_without_a_marker_is_a_consistency_violation():
    marker = a_user(-10)
    assert CONSISTENCY in Walk({marker["id"]: marker}).take(page([a_user(5)]))


def test_a_walk_that_shows_an_old_version_of_a_marker_is_a_consistency_violation():
    marker = a_user(3, name="New name")
    walk = Walk({marker["id"]: marker})
    assert CONSISTENCY in walk.take(page([{**marker, "name": "Old name"}]))


def test_next_links_are_replayed_against_the_base_url_under_test():
    assert next_query("http://proxy:9/api/v1/users/?cursor=abc&limit=20") == (
        "/api/v1/users/?cursor=abc&limit=20"
    )
    assert next_query("http://proxy:9/api/v1/users/?limit=20") is None


def test_every_scenario_has_a_locustfile_and_tolerates_no_failure():
    for profile in PROFILES.values():
        assert (ROOT / "loadtest" / "scenarios" / f"{profile.module}.py").exists(), profile.name
        assert profile.thresholds.max_failures == 0, profile.name
        assert profile.thresholds.max_consistency_violations == 0, profile.name
        assert profile.thresholds.p95_ms and profile.thresholds.p99_ms, profile.name


# --------------------------------------------------------------------------- a stale server


class StaleUsersApi(BaseHTTPRequestHandler):
    """Just enough of the users API for the crud scenario, with one bug: a read by id returns
    the version before the latest update, as a lagging replica would."""

    protocol_version = "HTTP/1.1"
    users: dict[str, list[dict]] = {}
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object = None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def _user_id(self) -> str:
        return urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/health":
            return self._answer(200, {"status": "ok"})
        with self.lock:
            latest = [versions[-1] for versions in self.users.values()]
            if parts.path == "/api/v1/users/" and "email" in query:
                found = [u for u in latest if u["email"] == query["email"][0]]
                return self._answer(200, {"results": found, "next": None})
            if parts.path == "/api/v1/users/":
                limit = int(query.get("limit", ["20"])[0])
                rows = sorted(latest, key=lambda u: (u["created_at"], u["id"]), reverse=True)
                return self._answer(200, {"results": rows[:limit], "next": None})
            versions = self.users.get(self._user_id())
        if not versions:
            return self._answer(404, {"error": "user not found", "code": "not_found"})
        return self._answer(200, versions[max(len(versions) - 2, 0)])  # one version behind

    def do_POST(self) -> None:
        sent = self._body()
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        user = {"id": str(uuid.uuid4()), **sent, "created_at": now, "updated_at": now}
        with self.lock:
            self.users[user["id"]] = [user]
        location = f"/api/v1/users/{user['id']}"
        self._answer(201, user, {"X-Consistency-Token": "t", "Location": location})

    def do_PUT(self) -> None:
        sent = self._body()
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self.lock:
            versions = self.users[self._user_id()]
            versions.append({**versions[-1], **sent, "updated_at": now})
            user = versions[-1]
        self._answer(200, user, {"X-Consistency-Token": "t"})

    def do_DELETE(self) -> None:
        with self.lock:
            self.users.pop(self._user_id(), None)
        self._answer(204, headers={"X-Consistency-Token": "t"})


@pytest.fixture
def stale_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StaleUsersApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_scenario(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "loadtest/run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_stale_read_after_an_update_fails_the_crud_run(stale_api, tmp_path):
    result = run_scenario(
        "crud", "--base-url", stale_api, "--users", "2", "--run-time", "4",
        "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["consistency_violations"] > 0
    assert not summary["passed"]
    assert "RESULT: FAIL" in result.stdout
    assert (run / "report.html").exists()


# --------------------------------------------------------------------------- the real server


@pytest.mark.cluster
@pytest.mark.slow
def test_make_loadtest_smoke_passes_against_the_real_server(api_server, shards_db, tmp_path):
    result = subprocess.run(
        [
            "make", "--no-print-directory", "loadtest-smoke",
            f"BASE_URL={api_server}", "USERS=10", "DURATION=12", f"RESULTS_DIR={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    assert run.name.endswith("-smoke")
    assert (run / "report.html").stat().st_size > 0
    assert (run / "locust_stats.csv").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["passed"]
    assert summary["total"]["requests"] > 50
    assert summary["total"]["failures"] == 0
    assert summary["consistency_violations"] == 0
    assert "RESULT: PASS (smoke)" in result.stdout


def test_the_live_line_shows_rate_percentiles_failures_and_time_left():
    from loadtest.run import live_line

    row = {
        "User Count": "10", "Requests/s": "11.25", "50%": "4", "95%": "12",
        "Total Request Count": "400", "Total Failure Count": "2",
    }  # fmt: skip
    line = live_line(row, elapsed=18.2, run_time=30)
    assert "req/s    11.2" in line and "p50     4 ms" in line and "p95    12 ms" in line
    assert "failures 2 (0.50%)" in line and line.endswith("12 s left")

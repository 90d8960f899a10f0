"""Benchmark our API against a bare-Django ceiling, stock DRF and a FastAPI + asyncpg
reference; write docs/BENCHMARKS.md.

    .venv/bin/python bench/run.py            # `make bench`: the main table (a few minutes)
    .venv/bin/python bench/run.py --scale    # `make bench-scale`: seed to 10M users, measure

The main run starts gunicorn with the product's gunicorn config (same workers, gevent) and
DJANGO_SETTINGS_MODULE=bench.settings on a port of its own, makes sure the database holds at
least --min-users seeded users (loading the difference with `seed_users`), samples real ids from
the shards into files the wrk Lua scripts read, and runs wrk against every target at a
fixed concurrency, then again at 256 and 2,000 connections to count errors. Every target
also runs with a single connection: that latency is the cost of one request, free of
queueing. Users created by the POST targets (emails `bench-...`) are deleted afterwards.
Beside it, on the next ports: the same server with API_AUTH=required, and the FastAPI +
asyncpg reference (bench/fastapi_ref.py, uvicorn, as many workers) on its own table, seeded
to as many users as the shards hold; every operation is rendered as ours / each reference.

The scale run measures GET by id, the first list page, cursor pages at depth 1 and 1,000,
and stats at the current size (when small), seeds up to --scale-users, and measures again;
with --reseed it first deletes every seeded user, so both sizes are measured in one run.

`--settings MODULE` runs the server with other settings (bench/experiments applies proposed
product changes from outside); `--only KEY ...` runs some main targets. Both are trials:
they print figures and leave the document alone.

Results are kept as JSON in var/bench/; docs/BENCHMARKS.md is rendered from both files, so
either run regenerates the whole document.
"""

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402 - after the settings module is chosen

django.setup()

import psutil  # noqa: E402
import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apikeys.keys import create_key  # noqa: E402
from bench import fastapi_ref  # noqa: E402
from shards.health import conninfo  # noqa: E402
from shards.topology import all_shards  # noqa: E402

OUT = ROOT / "var" / "bench"
DOC = ROOT / "docs" / "BENCHMARKS.md"
LUA = ROOT / "bench" / "lua"
EMAIL_PREFIX = "bench"  # users the POST targets create; deleted after the run
PAGE = 20


# --- database helpers ---------------------------------------------------------------------
def _connect(alias: str) -> psycopg.Connection:
    return psycopg.connect(**{**conninfo(alias), "autocommit": True, "connect_timeout": 5})


def user_total() -> int:
    """Users on every shard, from the trigger-kept counters (what stats reports)."""
    total = 0
    for shard in all_shards():
        with _connect(shard.primary_alias) as conn:
            total += conn.execute("SELECT coalesce(sum(n), 0) FROM user_counts").fetchone()[0]
    return int(total)


def seed(count: int) -> dict:
    """Run seed_users for `count` users; returns its figures."""

    class Tee:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text
            sys.stdout.write(text)

        def flush(self) -> None:
            sys.stdout.flush()

    out = Tee()
    started = time.monotonic()
    call_command("seed_users", count=count, stdout=out)
    total = time.monotonic() - started
    load_seconds = None
    for line in out.text.splitlines():
        if line.startswith("seeded ") and " in " in line:
            load_seconds = float(line.split(" in ")[1].split(" s")[0])
    load_seconds = load_seconds or total
    return {
        "count": count,
        "load_seconds": round(load_seconds, 1),
        "rate": round(count / load_seconds),
        "total_seconds": round(total, 1),
    }


def sample_ids(per_shard: int) -> dict[str, Path]:
    """Real ids from the database into one-id-per-line files for the Lua scripts.

    Only users the seed made: other users of the dev database may be deleted while the
    benchmark runs (a 404 would count as an error), and PUT must not rename them."""
    OUT.mkdir(parents=True, exist_ok=True)
    everyone, shard0 = [], []
    for shard in all_shards():
        with _connect(shard.primary_alias) as conn:
            ids = [
                str(row[0])
                for row in conn.execute(
                    "SELECT id FROM users WHERE email LIKE 'seed-%%' ORDER BY random() LIMIT %s",
                    [per_shard],
                )
            ]
        everyone += ids
        if shard.id == 0:
            shard0 = ids
    paths = {}
    for name, ids in {"all": everyone, "shard0": shard0}.items():
        if not ids:
            raise SystemExit(f"no seeded user ids to sample for {name!r}: make seed COUNT=10000")
        path = OUT / f"ids_{name}.txt"
        path.write_text("\n".join(ids) + "\n")
        paths[name] = path
    return paths


def seeded_users() -> int:
    total = 0
    for shard in all_shards():
        with _connect(shard.primary_alias) as conn:
            total += conn.execute(
                "SELECT count(*) FROM users WHERE email LIKE 'seed-%'"
            ).fetchone()[0]
    return int(total)


def delete_users(prefix: str = EMAIL_PREFIX) -> int:
    """Remove users whose email starts with `prefix-` and their email claims (by default
    what the POST targets created)."""
    deleted = 0
    pattern = f"{prefix}-%"
    for shard in all_shards():
        with _connect(shard.primary_alias) as conn:
            cursor = conn.execute("DELETE FROM users WHERE email LIKE %s", [pattern])
            deleted += cursor.rowcount
            conn.execute("DELETE FROM email_lookup WHERE email LIKE %s", [pattern])
    return deleted


def delete_bench_users() -> int:
    return delete_users(EMAIL_PREFIX)


def wait_for_replicas(timeout: float = 120.0) -> None:
    from users.management.commands.seed_users import wait_for_replicas as wait

    wait(list(all_shards()), timeout)


# --- the server under test ------------------------------------------------------------------
class Server:
    """gunicorn with the product's config and bench.settings, in its own process group."""

    name = "gunicorn"

    def __init__(
        self,
        port: int,
        workers: int | None = None,
        settings: str = "bench.settings",
        root: Path = ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.workers = workers
        self.settings = settings
        self.extra_env = env or {}
        self.root = root  # the checkout it serves (another commit's, for a side-by-side run)
        self.process: subprocess.Popen | None = None
        self.log_path = OUT / f"{self.name}-{port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"]

    def __enter__(self) -> "Server":
        if _port_open(self.port):
            raise SystemExit(f"port {self.port} is busy: set BENCH_PORT")
        env = {
            **os.environ,
            "PORT": str(self.port),
            "DJANGO_SETTINGS_MODULE": self.settings,
            "LOG_LEVEL": "warning",
            **self.extra_env,
        }
        env.pop("ACCESS_LOG", None)
        if self.workers:
            env["WEB_CONCURRENCY"] = str(self.workers)
        OUT.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, _ = http_get(self.port, "/health")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit("bench server did not start:\n" + self.log_path.read_text()[-3000:])

    def __exit__(self, *exc_info: object) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        result = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in result.stdout.split()]

    def worker_count(self) -> int:
        return len(self.worker_pids())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far. Per request, it is a
        figure that load from other processes on the machine barely moves."""
        ticks = 0
        for pid in self.worker_pids():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    # Fields 14 and 15 (utime, stime) follow the ")" closing the name.
                    fields = stat.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return ticks / os.sysconf("SC_CLK_TCK")


class FastApiServer(Server):
    """The FastAPI + asyncpg reference (bench/fastapi_ref.py): uvicorn with uvloop and
    httptools, `workers` worker processes, in its own process group like gunicorn."""

    name = "uvicorn"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "bench.fastapi_ref:app", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.workers or 2), "--loop", "uvloop",
                "--http", "httptools", "--log-level", "warning", "--no-access-log"]  # fmt: skip

    def worker_pids(self) -> list[int]:
        # uvicorn's workers are multiprocessing children; its resource tracker is not one.
        assert self.process is not None
        children = psutil.Process(self.process.pid).children()
        return [c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())]


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def cursor_path(port: int, depth: int) -> str | None:
    """The list URL of the page after `depth` pages, found by following `next` links;
    None when there are not that many pages."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = f"/api/v1/users/?limit={PAGE}"
    try:
        for _ in range(depth):
            conn.request("GET", path)
            response = conn.getresponse()
            body = json.loads(response.read())
            if response.status != 200:
                raise SystemExit(f"cannot walk to page depth {depth}: {response.status}")
            if not body.get("next"):
                return None
            parts = urllib.parse.urlsplit(body["next"])
            path = f"{parts.path}?{parts.query}"
    finally:
        conn.close()
    return path


# --- wrk --------------------------------------------------------------------------------------
def wrk(
    port: int,
    script: str,
    path: str = "/",
    *,
    connections: int,
    threads: int,
    seconds: int,
    timeout: int = 10,
    env: dict | None = None,
    server: Server | None = None,
) -> dict:
    """One wrk run; the figures its Lua done() printed, plus derived req/s and, given the
    server, the workers' CPU time per request."""
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        f"--timeout={round(timeout)}s",
        "-s",
        str(LUA / script),
        f"http://127.0.0.1:{port}{path}",
    ]
    cpu_before = server.cpu_seconds() if server else 0.0
    result = subprocess.run(
        command,
        cwd=ROOT,
        # A fresh nonce per run keeps the emails POST makes unique across runs.
        env={**os.environ, **(env or {}), "BENCH_NONCE": uuid.uuid4().hex[:12]},
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    if server:
        cpu = server.cpu_seconds() - cpu_before
        figures["cpu_ms"] = 1000 * cpu / max(figures["requests"], 1)
    return figures


def combine(runs: list[dict]) -> dict:
    """Several rounds of one target as one result: the median of the rounds' req/s and
    CPU per request (a round disturbed by load from elsewhere moves a median less than a
    total), the mean p50, the worst p99, the errors of all."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    keys = ("connect", "read", "write", "status", "timeout", "errors")
    result = {
        "requests": requests,
        "seconds": round(seconds, 1),
        "rps": statistics.median(r["requests"] / (r["duration_us"] / 1e6) for r in runs),
        "p50_ms": sum(r["p50_us"] for r in runs) / len(runs) / 1000,
        "p99_ms": max(r["p99_us"] for r in runs) / 1000,
        "max_ms": max(r["max_us"] for r in runs) / 1000,
        **{k: sum(r[k] for r in runs) for k in keys},
    }
    if all("cpu_ms" in r for r in runs):
        result["cpu_ms"] = statistics.median(r["cpu_ms"] for r in runs)
    return result


# --- the targets --------------------------------------------------------------------------------
def main_targets(ids: dict[str, Path], api_key: str = "") -> list[dict]:
    targets = [
        {
            "key": "get_ceiling",
            "label": "GET by id: ceiling (bare Django view, same SELECT, replica)",
            "script": "get_ids.lua",
            "env": {"BENCH_IDS": str(ids["all"]), "BENCH_PREFIX": "/bench/ceiling/users/"},
        },
        {
            "key": "get_stock",
            "label": "GET by id: stock DRF ModelViewSet (shard 0 primary)",
            "script": "get_ids.lua",
            "env": {
                "BENCH_IDS": str(ids["shard0"]),
                "BENCH_PREFIX": "/bench/stock/users/",
                "BENCH_SUFFIX": "/",
            },
        },
        {
            "key": "get_ours",
            "label": "GET /api/v1/users/{id} (ours)",
            "script": "get_ids.lua",
            "env": {"BENCH_IDS": str(ids["all"])},
        },
        {
            "key": "get_ours_auth",
            "label": "GET /api/v1/users/{id} (ours, API_AUTH=required, a valid key)",
            "script": "get_ids.lua",
            "env": {"BENCH_IDS": str(ids["all"]), "BENCH_AUTH": api_key},
            "server": "auth",
        },
        {
            "key": "get_fastapi",
            "label": "GET by id: FastAPI + asyncpg (one table)",
            "script": "get_ids.lua",
            "env": {"BENCH_IDS": str(ids.get("fastapi")), "BENCH_PREFIX": "/users/"},
            "server": "fastapi",
        },
        {
            "key": "post_ours",
            "label": "POST /api/v1/users/ (ours)",
            "script": "post_users.lua",
            "env": {"BENCH_PATH": "/api/v1/users/"},
        },
        {
            "key": "post_bare",
            "label": "POST: bare Django view, same two inserts",
            "script": "post_users.lua",
            "env": {"BENCH_PATH": "/bench/bare/users"},
        },
        {
            "key": "post_stock",
            "label": "POST: stock DRF ModelViewSet (one INSERT)",
            "script": "post_users.lua",
            "env": {"BENCH_PATH": "/bench/stock/users/"},
        },
        {
            "key": "post_fastapi",
            "label": "POST: FastAPI + asyncpg (one INSERT, unique lower(email))",
            "script": "post_users.lua",
            "env": {"BENCH_PATH": "/users/"},
            "server": "fastapi",
        },
        {
            "key": "put_ours",
            "label": "PUT /api/v1/users/{id} (ours, new name)",
            "script": "put_users.lua",
            "env": {"BENCH_IDS": str(ids["all"])},
        },
        {
            "key": "list_ours",
            "label": f"GET /api/v1/users/?limit={PAGE} (ours, all shards)",
            "script": "fixed.lua",
            "path": f"/api/v1/users/?limit={PAGE}",
        },
        {
            "key": "list_ceiling",
            "label": "list, first page: bare Django view (one shard's replica)",
            "script": "fixed.lua",
            "path": f"/bench/ceiling/users?limit={PAGE}",
        },
        {
            "key": "list_stock",
            "label": "list, first page: stock DRF CursorPagination (shard 0 primary)",
            "script": "fixed.lua",
            "path": "/bench/stock/users/",
        },
        {
            "key": "list_fastapi",
            "label": "list, first page: FastAPI + asyncpg (one table)",
            "script": "fixed.lua",
            "path": f"/users/?limit={PAGE}",
            "server": "fastapi",
        },
        {
            "key": "stats_ours",
            "label": "GET /api/v1/shards/stats (ours)",
            "script": "fixed.lua",
            "path": "/api/v1/shards/stats",
        },
    ]
    # The reference's targets need its ids (and its server): the main run's, not profile.py's.
    return [t for t in targets if t.get("server") != "fastapi" or "fastapi" in ids]


def _server_of(server: Server | dict[str, Server], target: dict) -> Server:
    """The server a target runs against: `main`, or the one its "server" key names."""
    if isinstance(server, Server):
        return server
    return server[target.get("server", "main")]


def run_target(server: Server | dict[str, Server], target: dict, args: argparse.Namespace) -> dict:
    """One wrk run of `target` at args.connections for args.duration, with worker CPU."""
    server = _server_of(server, target)
    return wrk(
        server.port,
        target["script"],
        target.get("path", "/"),
        connections=args.connections,
        threads=args.threads,
        seconds=args.duration,
        env=target.get("env"),
        server=server,
    )


def run_targets(
    server: Server | dict[str, Server], targets: list[dict], args: argparse.Namespace
) -> dict[str, dict]:
    """Each target at args.connections for args.rounds rounds, alternating the order
    between rounds so a burst of load from elsewhere does not land on one target only;
    then once more with a single connection."""
    runs: dict[str, list[dict]] = {t["key"]: [] for t in targets}
    for round_no in range(args.rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            print(f"  {target['key']:<14} round {round_no + 1}/{args.rounds}", flush=True)
            runs[target["key"]].append(run_target(server, target, args))
    results = {}
    for target in targets:
        single = wrk(
            _server_of(server, target).port,
            target["script"],
            target.get("path", "/"),
            connections=1,
            threads=1,
            seconds=args.single_duration,
            env=target.get("env"),
        )
        results[target["key"]] = {
            "label": target["label"],
            **combine(runs[target["key"]]),
            "single_p50_ms": single["p50_us"] / 1000,
            "single_p99_ms": single["p99_us"] / 1000,
            "single_rps": single["rps"],
        }
        r = results[target["key"]]
        print(
            f"  {target['key']:<14} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
            f"  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
            f"  cpu {r.get('cpu_ms', 0):.2f} ms/req  | 1 conn p50 {r['single_p50_ms']:.2f} ms",
            flush=True,
        )
    return results


def run_concurrency(server: Server, targets: list[dict], args: argparse.Namespace) -> list[dict]:
    rows = []
    for connections in args.error_connections:
        for target in targets:
            figures = wrk(
                server.port,
                target["script"],
                target.get("path", "/"),
                connections=connections,
                threads=args.threads,
                seconds=args.error_duration,
                timeout=args.error_timeout,
                env=target.get("env"),
                server=server,
            )
            row = {"key": target["key"], "label": target["label"], "connections": connections}
            row.update(combine([figures]))
            rows.append(row)
            print(
                f"  {target['key']:<14} c={connections:<5} {row['rps']:8.0f} req/s"
                f"  p99 {row['p99_ms']:8.1f} ms  errors {row['errors']}",
                flush=True,
            )
    return rows


# --- the machine and versions --------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict:
    found = {"Python": platform.python_version()}
    for name in ("Django", "djangorestframework", "psycopg", "psycopg-pool", "gunicorn"):
        found[name] = metadata.version(name)
    found["gevent"] = metadata.version("gevent")
    found["orjson"] = metadata.version("orjson")
    for name in ("fastapi", "uvicorn", "uvloop", "httptools", "asyncpg"):
        found[name] = metadata.version(name)
    found["libpq"] = str(psycopg.pq.version())
    with _connect(all_shards()[0].primary_alias) as conn:
        found["PostgreSQL"] = conn.execute("SHOW server_version").fetchone()[0]
    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    try:
        out = subprocess.run([pgbouncer, "--version"], capture_output=True, text=True, check=True)
        found["PgBouncer"] = out.stdout.split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        found["PgBouncer"] = "unknown"
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (out.stdout or out.stderr).split()[1]
    return found


# --- the runs ---------------------------------------------------------------------------------
REFERENCE_MAX_ROWS = 1_000_000


def run_main(args: argparse.Namespace) -> dict:
    started = datetime.now(UTC)
    info = {"machine": machine(), "versions": versions()}
    seeded = seeded_users()
    if seeded < args.min_users:
        print(f"seeding {args.min_users - seeded:,} users (the run needs {args.min_users:,})")
        seed(args.min_users - seeded)
    ids = sample_ids(args.sample)
    # The reference's own table holds as many seeded users as the shards together, up to
    # REFERENCE_MAX_ROWS: after `make bench-scale` the shards hold 10M, whose loading and
    # VACUUM would lengthen every later run (a single INSERT of them also outlasted the
    # servers' 30 s statement_timeout). Reads by key or by index range cost about the same
    # at either size (the scale table shows it for ours).
    reference_rows, reference_ids = fastapi_ref.prepare(
        min(max(seeded, args.min_users), REFERENCE_MAX_ROWS), args.sample
    )
    ids["fastapi"] = OUT / "ids_fastapi.txt"
    ids["fastapi"].write_text("\n".join(reference_ids) + "\n")
    key_row, api_key = create_key("bench")  # for the auth-on target; revoked afterwards
    auth_env = {"API_AUTH": "required"}
    with (
        Server(args.port, settings=args.settings) as server,
        Server(args.port + 1, settings=args.settings, env=auth_env) as auth_server,
        FastApiServer(args.port + 2, workers=server.worker_count()) as fastapi_server,
    ):
        servers = {"main": server, "auth": auth_server, "fastapi": fastapi_server}
        workers = server.worker_count()
        targets = main_targets(ids, api_key)
        if args.only:
            targets = [t for t in targets if t["key"] in args.only]
        print(f"bench servers on :{args.port}, :{args.port + 1} (API_AUTH=required) and"
              f" :{args.port + 2} (FastAPI), {workers} workers each; warming up",
              flush=True)  # fmt: skip
        for target in [t for t in targets if not t["key"].startswith(("post", "put"))]:
            wrk(_server_of(servers, target).port, target["script"], target.get("path", "/"),
                connections=16, threads=args.threads, seconds=2, env=target.get("env"))  # fmt: skip
        users = user_total()
        print(f"{users:,} users; {args.connections} connections, {args.threads} threads")
        results = run_targets(servers, targets, args)
        concurrency: list[dict] = []
        by_key = {t["key"]: t for t in targets}
        loud = [by_key[k] for k in ("get_ours", "post_ours") if k in by_key]
        if args.error_connections and loud:
            print("errors at high concurrency", flush=True)
            concurrency = run_concurrency(server, loud, args)
    key_row.delete()
    removed = delete_bench_users() + fastapi_ref.delete_users(EMAIL_PREFIX)
    wait_for_replicas()
    print(f"removed {removed:,} users created by the POST targets")
    return {
        **info,
        "started": started.isoformat(timespec="seconds"),
        "users": users,
        "reference_rows": reference_rows,
        "workers": workers,
        "worker_connections": int(os.environ.get("WORKER_CONNECTIONS", "10000")),
        "params": {
            "connections": args.connections,
            "threads": args.threads,
            "seconds": args.duration,
            "rounds": args.rounds,
            "single_seconds": args.single_duration,
            "error_seconds": args.error_duration,
            "error_timeout": args.error_timeout,
        },
        "results": results,
        "concurrency": concurrency,
    }


def scale_targets(port: int, ids: dict[str, Path]) -> list[dict]:
    depth_1 = cursor_path(port, 1)
    depth_1000 = cursor_path(port, 1000)
    targets = [
        {
            "key": "get_ours",
            "label": "GET /api/v1/users/{id}",
            "script": "get_ids.lua",
            "env": {"BENCH_IDS": str(ids["all"])},
        },
        {
            "key": "list_first",
            "label": f"list, first page (limit {PAGE})",
            "script": "fixed.lua",
            "path": f"/api/v1/users/?limit={PAGE}",
        },
        {
            "key": "cursor_1",
            "label": "cursor page at depth 1",
            "script": "fixed.lua",
            "path": depth_1,
        },
        {
            "key": "cursor_1000",
            "label": f"cursor page at depth 1,000 (after {1000 * PAGE:,} rows)",
            "script": "fixed.lua",
            "path": depth_1000,
        },
        {
            "key": "stats",
            "label": "GET /api/v1/shards/stats",
            "script": "fixed.lua",
            "path": "/api/v1/shards/stats",
        },
    ]
    # A small database may not be 1,000 pages deep.
    return [t for t in targets if t.get("path", "/") is not None]


def measure_scale(args: argparse.Namespace) -> dict:
    ids = sample_ids(args.sample)
    with Server(args.port, settings=args.settings) as server:
        targets = scale_targets(args.port, ids)
        for target in targets:
            wrk(args.port, target["script"], target.get("path", "/"), connections=16,
                threads=args.threads, seconds=2, env=target.get("env"))  # fmt: skip
        users = user_total()
        print(f"{users:,} users (workers: {server.worker_count()})", flush=True)
        load_average = [round(x, 2) for x in os.getloadavg()]
        results = run_targets(server, targets, args)
    return {"users": users, "results": results, "load_average": load_average}


def run_scale(args: argparse.Namespace) -> dict:
    previous = load(OUT / "scale.json") or {}
    info = {"machine": machine(), "versions": versions()}
    started = datetime.now(UTC)
    if args.reseed:
        from users.management.commands.seed_users import vacuum_analyze

        print("deleting every seeded user (--reseed)", flush=True)
        print(f"deleted {delete_users('seed'):,}", flush=True)
        vacuum_analyze(list(all_shards()))
        wait_for_replicas(600)
        previous = {}
    have = seeded_users()
    if have < args.min_users:
        print(f"seeding {args.min_users - have:,} users (the small size)", flush=True)
        seed(args.min_users - have)
    total = user_total()
    small = previous.get("small")
    if total < args.scale_users // 10:
        print(f"measuring at the current size ({total:,} users)", flush=True)
        small = measure_scale(args)
    seeded = previous.get("seed")
    if total < args.scale_users:
        print(f"seeding {args.scale_users - total:,} users", flush=True)
        seeded = seed(args.scale_users - total)
    print("measuring at the large size", flush=True)
    large = measure_scale(args)
    return {
        **info,
        "started": started.isoformat(timespec="seconds"),
        "params": {
            "connections": args.connections,
            "threads": args.threads,
            "seconds": args.duration,
            "rounds": args.rounds,
            "single_seconds": args.single_duration,
        },
        "small": small,
        "large": large,
        "seed": seeded,
    }


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


# --- the document -------------------------------------------------------------------------------
def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _yes(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(main: dict | None, scale: dict | None) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand. The main table comes from",
        "`make bench` (`.venv/bin/python bench/run.py`), the scale figures from `make bench-scale`",
        "(`.venv/bin/python bench/run.py --scale`), which seeds the dev database up to 10,000,000",
        "users once. See [PERFORMANCE_TUNING.md](PERFORMANCE_TUNING.md) for profiles and",
        "what the figures mean for the code.",
        "",
        "wrk, gunicorn, the PgBouncers and the PostgreSQL servers share the same few cores, so",
        "absolute figures are low and somewhat noisy; compare rows of one run with each other.",
        "",
    ]
    info = main or scale
    if info is None:
        return "\n".join(lines + ["No results yet: run `make bench`.", ""])
    m, v = info["machine"], info["versions"]
    lines += [
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {m['cpu']}, {m['nproc']} cores (nproc) |",
        f"| Memory | {m['memory_gib']} GiB |",
        f"| OS | {m['os']} |",
        "| Software | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
    ]
    if main:
        lines += [
            f"| Server | gunicorn, gevent worker class, {main['workers']} workers"
            f" (`WEB_CONCURRENCY`, default nproc), `messenger/gunicorn.conf.py` |",
            f"| Load average when the main run started | {main['machine']['load_average']} |",
        ]
    lines.append("")
    if main:
        lines += render_main(main)
    if scale:
        lines += render_scale(scale, main)
    return "\n".join(lines)


def render_main(main: dict) -> list[str]:
    r, p = main["results"], main["params"]
    lines = [
        f"## Main table ({main['started']}, {main['users']:,} users)",
        "",
        f"`make bench`: wrk, {p['connections']} connections, {p['threads']} threads,"
        f" {p['rounds']} rounds of {p['seconds']} s per target in alternating order, medians"
        " of the rounds' req/s and CPU per request;"
        f" then {p['single_seconds']} s with one connection (the cost of one request, no"
        " queueing). Ids are real ids sampled from the shards, a random one per request.",
        "",
        "Worker CPU is the CPU time (user + system) the gunicorn workers used during the"
        " target's runs divided by the requests served. On a shared machine it moves far"
        " less than req/s (about ±10 % between runs here, against ±50 % for req/s), so the"
        " ratios are given both ways.",
        "",
        "| target | req/s | p50 ms | p99 ms | errors | worker CPU ms/req | 1 conn: p50 ms"
        " | 1 conn: p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r.values():
        lines.append(
            f"| {row['label']} | {row['rps']:,.0f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])}"
            f" | {row['errors']} | {row.get('cpu_ms', 0):.2f} | {_ms(row['single_p50_ms'])}"
            f" | {_ms(row['single_p99_ms'])} |"
        )
    get, ceiling, stock = r["get_ours"], r["get_ceiling"], r["get_stock"]
    post, bare, listing = r["post_ours"], r["post_bare"], r["list_ours"]

    def cpu(row: dict) -> float:
        return row.get("cpu_ms") or 0.0

    # (label, by req/s, by CPU per request: the inverse ratio of CPU costs, target)
    ratios = [
        ("GET by id: ours / ceiling", get, ceiling, 0.9),
        ("GET by id: ours / stock DRF", get, stock, 2.0),
        ("POST: ours / bare view", post, bare, 0.8),
        ("list page / GET by id", listing, get, 0.5),
    ]
    if "get_ours_auth" in r:  # API keys on: at most 5 % more CPU per request
        ratios.append(("GET by id: API_AUTH=required / off", r["get_ours_auth"], get, 0.95))
    lines += [
        "",
        "### Ratios against the targets",
        "",
        "| ratio | by req/s | by worker CPU per request | target | by req/s | by CPU |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for label, ours, other, target in ratios:
        by_rps = _ratio(ours["rps"], other["rps"])
        by_cpu = _ratio(cpu(other), cpu(ours))
        lines.append(
            f"| {label} | {by_rps:.2f} | {by_cpu:.2f} | ≥ {target} | {_yes(by_rps >= target)}"
            f" | {_yes(by_cpu >= target)} |"
        )
    lines += render_references(main)
    if main["concurrency"]:
        lines += [
            "",
            "### Errors at high concurrency",
            "",
            f"{p['error_seconds']} s per row, wrk timeout {p['error_timeout']} s (a request"
            " slower than that counts as an error). Errors = connect + read + write + timeout"
            " + non-2xx/3xx responses. Zero errors means every request was answered, and"
            " answered correctly, within the timeout; the p99 column shows how close to it"
            " the queue got.",
            "",
            "| target | connections | req/s | p50 ms | p99 ms | connect | read | write | timeout"
            " | non-2xx | |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in main["concurrency"]:
            lines.append(
                f"| {row['label']} | {row['connections']:,} | {row['rps']:,.0f}"
                f" | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | {row['connect']}"
                f" | {row['read']} | {row['write']} | {row['timeout']} | {row['status']}"
                f" | {_yes(row['errors'] == 0)} |"
            )
    lines.append("")
    return lines


# (operation, ours, FastAPI + asyncpg, stock DRF, bare Django): keys of main targets.
OPERATIONS = [
    ("GET by id", "get_ours", "get_fastapi", "get_stock", "get_ceiling"),
    ("POST create (unique email)", "post_ours", "post_fastapi", "post_stock", "post_bare"),
    (f"list, first page of {PAGE}", "list_ours", "list_fastapi", "list_stock", "list_ceiling"),
]


def render_references(main: dict) -> list[str]:
    """Ours against the three single-database references, per operation (issue 14)."""
    r = main["results"]
    if not all(key in r for row in OPERATIONS for key in row[1:]):
        return []
    lines = [
        "",
        "### Ours against FastAPI + asyncpg, stock DRF and bare Django",
        "",
        "Each reference does the same job on one database, where ours spreads it over"
        f" {len(all_shards())} shards: the FastAPI + asyncpg reference (`bench/fastapi_ref.py`:"
        f" uvicorn with uvloop and httptools, {main['workers']} workers, an asyncpg pool through"
        f" the shard-0 PgBouncer in transaction mode) on its own table of"
        f" {main.get('reference_rows', 0):,} rows; stock DRF and the bare Django views on shard"
        " 0's tables. Ratio above 1: ours is faster. First by req/s, then (in brackets) by"
        " worker CPU per request, the inverse ratio of the CPU costs.",
        "",
        "| operation | ours / FastAPI+asyncpg | ours / stock DRF | ours / bare Django (ceiling) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, ours, *others in OPERATIONS:
        cells = [
            f"{_ratio(r[ours]['rps'], r[o]['rps']):.2f}"
            f" ({_ratio(r[o].get('cpu_ms', 0), r[ours].get('cpu_ms', 0)):.2f})"
            for o in others
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render_scale(scale: dict, main: dict | None) -> list[str]:
    p = scale["params"]
    small, large = scale.get("small"), scale["large"]
    lines = [
        f"## Scale ({scale['started']})",
        "",
        f"`make bench-scale`: the same server and wrk settings ({p['connections']} connections,"
        f" {p['rounds']} rounds of {p['seconds']} s; one connection for {p['single_seconds']} s)."
        " A cursor page at depth d is the page after d pages of 20, reached by following"
        " `next` links.",
        "",
    ]
    sizes = [s for s in (small, large) if s]
    header = "| target |" + "".join(
        f" {s['users']:,} users: req/s | p50 ms | p99 ms | CPU ms/req | 1 conn p50 ms |"
        for s in sizes
    )
    lines += [header, "| --- |" + " ---: | ---: | ---: | ---: | ---: |" * len(sizes)]
    for key, row in large["results"].items():
        cells = ""
        for size in sizes:
            s = size["results"].get(key)
            if s is None:
                cells += " | | | | |"
                continue
            cpu = f"{s['cpu_ms']:.2f}" if "cpu_ms" in s else ""
            cells += (
                f" {s['rps']:,.0f} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {cpu}"
                f" | {_ms(s['single_p50_ms'])} |"
            )
        lines.append(f"| {row['label']} |{cells}")
    loads = ", ".join(f"{s['users']:,} users: {s.get('load_average', '?')}" for s in sizes)
    lines += ["", f"Load average when each size was measured: {loads}."]
    stats = large["results"]["stats"]
    deep, shallow = large["results"]["cursor_1000"], large["results"]["cursor_1"]
    lines += [
        "",
        f"- Stats at {large['users']:,} users: {_ms(stats['single_p50_ms'])} ms p50,"
        f" {_ms(stats['single_p99_ms'])} ms p99 with one connection"
        f" (target < 50 ms: {_yes(stats['single_p99_ms'] < 50)}). Its cost stays flat with"
        " the number of users: it sums 16 trigger-kept counters per shard and never scans"
        " `users`.",
        f"- A cursor page at depth 1,000 costs {_ms(deep['single_p50_ms'])} ms p50 against"
        f" {_ms(shallow['single_p50_ms'])} ms at depth 1 (one connection): keyset pagination"
        " reads limit+1 rows per shard from the (created_at, id) index at any depth.",
    ]
    if small:
        lines += ["", f"CPU per request at {large['users']:,} users against {small['users']:,}"
                  " (target: within 10 %):", ""]  # fmt: skip
        for key in ("get_ours", "list_first"):
            before, after = small["results"].get(key), large["results"][key]
            if before and before.get("cpu_ms") and after.get("cpu_ms"):
                ratio = after["cpu_ms"] / before["cpu_ms"]
                lines.append(
                    f"- {after['label']}: {before['cpu_ms']:.2f} → {after['cpu_ms']:.2f} ms,"
                    f" {ratio:.2f}× ({_yes(ratio <= 1.10)})"
                )
    first = large["results"]["list_first"]
    if deep.get("cpu_ms") and first.get("cpu_ms"):
        ratio = deep["cpu_ms"] / first["cpu_ms"]
        lines.append(
            f"- At {large['users']:,} users a cursor page at depth 1,000 costs {ratio:.2f}× the"
            f" CPU of the first page ({deep['cpu_ms']:.2f} against {first['cpu_ms']:.2f} ms;"
            f" target within 10 %: {_yes(ratio <= 1.10)})."
        )
    seeded = scale.get("seed")
    if seeded:
        lines.append(
            f"- Seeding: `manage.py seed_users --count {seeded['count']}` loaded"
            f" {seeded['count']:,} users in {seeded['load_seconds']} s"
            f" ({seeded['rate']:,} users/s); {seeded['total_seconds']} s in all with"
            " VACUUM (ANALYZE) and waiting for every replica to replay the load."
        )
    lines.append("")
    return lines


SIDE_BY_SIDE = "## This build against an earlier one"


def render_side_by_side(compare: dict) -> list[str]:
    """bench/compare_builds.py's last run: both builds served at once, interleaved rounds."""
    lines = [
        f"{SIDE_BY_SIDE} ({compare.get('date', 'undated')})",
        "",
        f"`{compare.get('command', 'bench/compare_builds.py')}`: the build at `{compare['ref']}`"
        f" and {compare['new']} served at once from one virtualenv against the dev database,"
        f" medians of {compare.get('rounds', '?')} interleaved rounds of"
        f" {compare.get('duration', '?')} s at {compare.get('connections', '?')} connections."
        " Below 1 in the CPU column: the newer build costs less.",
        "",
        "| operation | earlier req/s | this req/s | this / earlier | earlier CPU ms/req"
        " | this CPU ms/req | this / earlier |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in compare["rows"].items():
        lines.append(
            f"| {key} | {r['ref_rps']:,.0f} | {r['new_rps']:,.0f}"
            f" | {_ratio(r['new_rps'], r['ref_rps']):.2f} | {r['ref_cpu_ms']:.3f}"
            f" | {r['new_cpu_ms']:.3f} | {_ratio(r['new_cpu_ms'], r['ref_cpu_ms']):.2f} |"
        )
    return lines + [""]


def _section(text: str, heading: str) -> str | None:
    """The section of `text` that starts with `heading`, up to the next `## ` heading."""
    start = text.find("\n" + heading)
    if start < 0:
        return None
    end = text.find("\n## ", start + 1)
    return text[start + 1 : end if end >= 0 else len(text)].rstrip("\n") + "\n"


def write_side_by_side(compare: dict) -> None:
    """Replace the side-by-side section of BENCHMARKS.md, leaving the rest as it is."""
    previous = DOC.read_text() if DOC.exists() else render(None, None)
    kept = _section(previous, SIDE_BY_SIDE)
    rest = previous.replace(kept, "") if kept else previous
    DOC.write_text(rest.rstrip("\n") + "\n\n" + "\n".join(render_side_by_side(compare)))
    print(f"wrote {DOC.relative_to(ROOT)}")


def write_doc() -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    scale = load(OUT / "scale.json")
    compare = load(OUT / "compare.json")
    text = render(load(OUT / "main.json"), scale).rstrip("\n") + "\n"
    # var/bench is not committed: without this checkout's own runs, the document keeps the
    # sections it had rather than losing figures no run here can render again.
    previous = DOC.read_text() if DOC.exists() else ""
    if scale is None and (kept := _section(previous, "## Scale")):
        text += "\n" + kept
    if compare is not None:
        text += "\n" + "\n".join(render_side_by_side(compare))
    elif kept := _section(previous, SIDE_BY_SIDE):
        text += "\n" + kept
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", action="store_true", help="Seed to --scale-users, measure.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "8091")))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="Seconds per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single-duration", type=int, default=3)
    parser.add_argument("--error-connections", type=int, nargs="*", default=[256, 2000])
    parser.add_argument("--error-duration", type=int, default=10)
    parser.add_argument("--error-timeout", type=int, default=10)
    parser.add_argument("--min-users", type=int, default=10_000, help="Seeded users needed.")
    parser.add_argument("--scale-users", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=4_000, help="Ids sampled per shard.")
    parser.add_argument("--render-only", action="store_true", help="Rewrite the doc only.")
    parser.add_argument(
        "--reseed",
        action="store_true",
        help="With --scale: delete every seeded user first, so both sizes are measured now.",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="KEY", help="Main targets to run (a trial: no doc written)."
    )
    parser.add_argument(
        "--settings",
        default="bench.settings",
        help="Settings of the server under test: try a proposed change without editing the"
        " product (a module that imports bench.settings and adjusts it); no doc written"
        " unless it is bench.settings.",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.render_only:
        write_doc()
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: make system")
    # 2,000 connections need 2,000 descriptors in wrk (inherited from this process).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        user_total()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"the cluster does not answer ({exc}): make up migrate-up") from exc
    OUT.mkdir(parents=True, exist_ok=True)
    result = run_scale(args) if args.scale else run_main(args)
    if args.only or args.settings != "bench.settings":
        return  # a trial: the document only shows the product as it is
    (OUT / ("scale.json" if args.scale else "main.json")).write_text(json.dumps(result, indent=2))
    write_doc()


if __name__ == "__main__":
    main()

"""The local cluster of database/cluster.py, tested against its real processes.

The main cluster (default settings) is brought up once (`up` is idempotent) and only read or
written; tests that stop or delete a cluster run their own on other ports in a temporary
CLUSTER_DIR, so they never stop the cluster that other tests use.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "database" / "cluster.py"
TEST_DB = "messenger_test"


def _load_launcher():
    spec = importlib.util.spec_from_file_location("cluster_launcher", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


def run_launcher(*args: str, env: dict[str, str] | None = None, check: bool = True):
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER), *args],
        env=env if env is not None else os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def connect(port: int, dbname: str = TEST_DB) -> psycopg.Connection:
    # prepare_threshold=None: PgBouncer in transaction mode cannot keep prepared statements.
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
        prepare_threshold=None,
    )


def pids(settings) -> dict[str, int | None]:
    layout = launcher.Layout(settings.cluster_dir)
    return {inst.name: launcher.pid_of(layout, inst) for inst in launcher.instances(settings)}


def wait_for_row(port: int, table: str, token: str, timeout: float) -> float:
    """Seconds until `token` is visible in `table` on the server at `port`; fails after timeout."""
    start = time.monotonic()
    with connect(port) as conn:
        while True:
            try:
                query = f"SELECT 1 FROM {table} WHERE token = %s"
                found = conn.execute(query, (token,)).fetchone()
            except psycopg.errors.UndefinedTable:  # the CREATE TABLE is not replayed yet
                found = None
            elapsed = time.monotonic() - start
            if found:
                return elapsed
            assert elapsed < timeout, f"row not replicated to port {port} within {timeout}s"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def settings():
    """The main cluster, as configured by the environment (defaults: 5 shards on 5440...)."""
    run_launcher("up")
    return launcher.load_settings()


@pytest.fixture(scope="module")
def shards(settings) -> list[int]:
    return list(range(settings.shards))


@pytest.fixture
def scratch_table(settings) -> Iterator[str]:
    """A table created on every primary (and so on every replica), dropped afterwards."""
    name = f"cluster_probe_{uuid.uuid4().hex[:12]}"
    for shard in range(settings.shards):
        with connect(settings.primary_base_port + shard) as conn:
            conn.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, token text NOT NULL)")
    yield name
    for shard in range(settings.shards):
        with connect(settings.primary_base_port + shard) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


# --------------------------------------------------------------------------- the main cluster


def test_every_primary_accepts_writes(settings, shards, scratch_table):
    for shard in shards:
        with connect(settings.primary_base_port + shard) as conn:
            conn.execute(f"INSERT INTO {scratch_table} (token) VALUES ('w')")
            assert conn.execute(f"SELECT count(*) FROM {scratch_table}").fetchone() == (1,)


def test_every_primary_streams_to_exactly_one_replica_through_its_slot(settings, shards):
    for shard in shards:
        with connect(settings.primary_base_port + shard, "postgres") as conn:
            rows = conn.execute(
                "SELECT r.state, s.slot_name FROM pg_stat_replication r "
                "LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid"
            ).fetchall()
        assert rows == [("streaming", f"shard_{shard}_replica")], f"shard {shard}: {rows}"


def test_a_row_written_on_a_primary_is_on_its_replica_within_one_second(
    settings, shards, scratch_table
):
    for shard in shards:
        token = uuid.uuid4().hex
        with connect(settings.primary_base_port + shard) as conn:
            conn.execute(f"INSERT INTO {scratch_table} (token) VALUES (%s)", (token,))
        wait_for_row(settings.replica_base_port + shard, scratch_table, token, timeout=1.0)


def test_replicas_refuse_writes(settings, shards, scratch_table):
    for shard in shards:
        with connect(settings.replica_base_port + shard) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute(f"INSERT INTO {scratch_table} (token) VALUES ('nope')")


def test_servers_run_in_utc_with_the_configured_limits(settings, shards):
    ports = [settings.control_port]
    for shard in shards:
        ports += [settings.primary_base_port + shard, settings.replica_base_port + shard]
    for port in ports:
        with connect(port, "postgres") as conn:
            tz, max_conn, fsync, feedback = conn.execute(
                "SELECT current_setting('TimeZone'), current_setting('max_connections')::int, "
                "current_setting('fsync'), current_setting('hot_standby_feedback')"
            ).fetchone()
        assert tz == "UTC"
        assert fsync == "on"
        assert feedback == "on"
        assert max_conn == (100 if port == settings.control_port else 400)


def test_every_database_exists_on_every_shard_and_control(settings, shards):
    for shard in shards:
        for port in (settings.primary_base_port + shard, settings.replica_base_port + shard):
            with connect(port, "postgres") as conn:
                names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            assert set(settings.databases) <= names
    with connect(settings.control_port, "postgres") as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert set(settings.control_databases) <= names


def test_each_pgbouncer_runs_transaction_pooling_with_the_seed_limits(settings, shards):
    expected = {
        "pool_mode": "transaction",
        "max_client_conn": "10000",
        "default_pool_size": "200",
        "max_db_connections": "300",
        "reserve_pool_size": "50",
        "auth_type": "trust",
        "admin_users": "postgres",
        "stats_users": "postgres",
        "ignore_startup_parameters": "extra_float_digits",
        "server_reset_query": "",
        "listen_port": None,  # per shard, filled below
    }
    for shard in shards:
        expected["listen_port"] = str(settings.pgbouncer_base_port + shard)
        with connect(settings.pgbouncer_base_port + shard, "pgbouncer") as conn:
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG")}
        assert {k: config.get(k) for k in expected} == expected, f"pgbouncer-{shard}"


def test_each_pgbouncer_routes_a_database_to_its_primary_and_d_replica_to_its_replica(
    settings, shards
):
    for shard in shards:
        bouncer = settings.pgbouncer_base_port + shard
        with connect(bouncer, TEST_DB) as conn:
            row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row == (settings.primary_base_port + shard, False)
        with connect(bouncer, f"{TEST_DB}_replica") as conn:
            row = conn.execute(
                "SELECT inet_server_port(), pg_is_in_recovery(), current_database()"
            ).fetchone()
        assert row == (settings.replica_base_port + shard, True, TEST_DB)


def test_a_second_up_is_fast_and_starts_nothing(settings):
    before = pids(settings)
    assert all(before.values()), before
    start = time.monotonic()
    out = run_launcher("up").stdout
    elapsed = time.monotonic() - start
    assert pids(settings) == before
    assert "(0 started," in out
    assert elapsed < 2.0, f"second up took {elapsed:.2f}s"


def test_ps_shows_every_process_up_and_every_replica_streaming(settings):
    out = run_launcher("ps").stdout
    lines = out.splitlines()
    for inst in launcher.instances(settings):
        [line] = [ln for ln in lines if f" {inst.name} " in ln]
        assert " up" in line, line
    assert sum(" streaming " in ln for ln in lines) == settings.shards


def test_stats_sums_cpu_and_memory_per_role(settings):
    out = run_launcher("stats", "--interval", "0.2").stdout
    totals = {ln.split()[0] for ln in out.split("\n\n")[-1].splitlines()[1:]}
    assert totals == {"control", "primary", "replica", "pgbouncer", "total"}


def test_logs_prints_the_tail_of_every_log(settings):
    out = run_launcher("logs", "-n", "3").stdout
    for inst in launcher.instances(settings):
        assert f"{inst.name}.log <==" in out


def test_ps_stats_and_logs_from_another_checkout_find_the_cluster_serving_its_ports(
    settings, tmp_path
):
    # Another checkout: its own (empty) CLUSTER_DIR, the same ports as the running cluster.
    env = {**os.environ, "CLUSTER_DIR": str(tmp_path / "cluster")}
    where = f"started from {settings.cluster_dir}"
    ps = run_launcher("ps", env=env)
    assert where in ps.stderr and f"CLUSTER_DIR={settings.cluster_dir}" in ps.stderr
    for inst in launcher.instances(settings):
        [line] = [ln for ln in ps.stdout.splitlines() if f" {inst.name} " in ln]
        assert " up" in line, line
    stats = run_launcher("stats", "--interval", "0.2", env=env)
    assert where in stats.stderr and "cluster is down" not in stats.stdout
    logs = run_launcher("logs", "-n", "1", env=env)
    assert f"{settings.cluster_dir}/log/control-db.log <==" in logs.stdout


def test_env_prints_the_resolved_settings(settings):
    out = run_launcher("env").stdout
    assert f"SHARDING_COUNT={settings.shards}" in out
    assert f"PGBOUNCER_BASE_PORT={settings.pgbouncer_base_port}" in out


# --------------------------------------------------------------------------- separate clusters

SCRATCH_PORTS = {
    "PRIMARY_BASE_PORT": "15440",
    "REPLICA_BASE_PORT": "15450",
    "PGBOUNCER_BASE_PORT": "16430",
    "CONTROL_DB_PORT": "15439",
}


def scratch_env(cluster_dir: str, shards: int = 3) -> dict[str, str]:
    env = {**os.environ, **SCRATCH_PORTS, "CLUSTER_DIR": cluster_dir, "SHARDING_COUNT": str(shards)}
    env.pop("CLUSTER_DATABASES", None)  # the defaults include TEST_DB
    return env


@pytest.fixture
def scratch_dir() -> Iterator[str]:
    # Not pytest's tmp_path: its parent is 0700, and the servers run as `postgres`.
    path = tempfile.mkdtemp(prefix="cluster-test-", dir="/tmp")
    yield path
    if os.path.exists(path):
        run_launcher("clean", env=scratch_env(path), check=False)
    assert not os.path.exists(path)


def processes_in(cluster_dir: str) -> list[int]:
    """Pids of live processes working in, or started with a path inside, `cluster_dir`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if "Z" in (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]:
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cluster_dir in cmdline or cwd.startswith(cluster_dir):
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_a_three_shard_cluster_on_other_ports_has_its_whole_lifecycle(scratch_dir):
    env = scratch_env(scratch_dir)
    settings = launcher.load_settings(env)
    assert settings.shards == 3

    # up from nothing: everything answers and replicates
    start = time.monotonic()
    out = run_launcher("up", env=env).stdout
    from_nothing = time.monotonic() - start
    assert "(10 started, 0 already running)" in out
    assert from_nothing < 30, f"up from nothing took {from_nothing:.1f}s"
    assert all(pids(settings).values())
    with connect(settings.pgbouncer_base_port + 2, f"{TEST_DB}_replica") as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (15452,)
    for shard in range(3):
        with connect(15440 + shard) as conn:
            conn.execute("CREATE TABLE kept (token text)")
            conn.execute("INSERT INTO kept VALUES (%s)", (f"shard-{shard}",))
        wait_for_row(15450 + shard, "kept", f"shard-{shard}", timeout=2.0)

    # ps reports a paused replica's lag by comparing LSNs (replay_lag would stay NULL)
    with connect(15450) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            with connect(15440) as primary:
                primary.execute("INSERT INTO kept SELECT 'lag' FROM generate_series(1, 100)")
            line = next(
                ln
                for ln in run_launcher("ps", env=env).stdout.splitlines()
                if ln.startswith("0 ") and "15450" in ln
            )
            assert int(line.split()[6]) > 0, line
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")

    # down leaves no process and frees every port
    run_launcher("down", env=env)
    assert not any(pids(settings).values())
    assert processes_in(scratch_dir) == []
    for inst in launcher.instances(settings):
        assert not launcher.port_taken(inst.port), inst

    # up after down keeps the data and is quick
    start = time.monotonic()
    run_launcher("up", env=env)
    from_stopped = time.monotonic() - start
    assert from_stopped < 5, f"up from stopped took {from_stopped:.1f}s"
    for shard in range(3):
        wait_for_row(15450 + shard, "kept", f"shard-{shard}", timeout=2.0)

    # clean removes processes and data
    run_launcher("clean", env=env)
    assert not os.path.exists(scratch_dir)
    assert processes_in(scratch_dir) == []


@pytest.mark.slow
def test_up_recovers_a_shard_whose_processes_were_killed(scratch_dir):
    env = scratch_env(scratch_dir, shards=1)
    settings = launcher.load_settings(env)
    run_launcher("up", env=env)
    layout = launcher.Layout(settings.cluster_dir)
    victims = launcher.instances(settings)[1:]  # shard-0, its replica and its pgbouncer
    for inst in victims:
        os.kill(launcher.pid_of(layout, inst), 9)
    out = run_launcher("up", env=env).stdout  # right away: the killed pids may still be zombies
    assert "(3 started, 1 already running)" in out
    with connect(settings.pgbouncer_base_port, f"{TEST_DB}_replica") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_up_refuses_a_port_taken_by_another_process(scratch_dir):
    env = scratch_env(scratch_dir, shards=1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # earlier tests' TIME_WAITs
        sock.bind(("127.0.0.1", int(SCRATCH_PORTS["PGBOUNCER_BASE_PORT"])))
        sock.listen()
        proc = run_launcher("up", env=env, check=False)
    assert proc.returncode == 1
    assert "pgbouncer-0 port 16430: taken by" in proc.stderr
    assert processes_in(scratch_dir) == []


def test_clean_refuses_to_delete_a_directory_that_is_not_a_cluster(scratch_dir):
    keep = Path(scratch_dir) / "precious.txt"
    keep.write_text("not a cluster")
    try:
        proc = run_launcher("clean", env=scratch_env(scratch_dir), check=False)
        assert proc.returncode == 1
        assert keep.exists()
    finally:
        keep.unlink()

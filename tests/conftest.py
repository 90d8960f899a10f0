"""Fixtures: the real cluster's test databases, a clean slate per test, a live API server.

Tests use the databases `messenger_test` (on every shard primary, reached through each
shard's PgBouncer; `messenger_test_replica` reaches the same database on the replica by
physical replication) and `control_test` on the control instance. They are migrated once
per session with `migrate_shards`, the command operators use. Writes really commit, so
replicas really see them; each test starts from empty shards."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from tests.fault_cluster import die_with_parent, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("TEST_API_PORT", "18080"))


def _use_test_databases() -> None:
    for alias in settings.DATABASES:
        test_name = settings.DATABASES[alias]["TEST"]["NAME"]
        settings.DATABASES[alias]["NAME"] = test_name
        connections.settings[alias]["NAME"] = test_name


def _ensure_control_database() -> None:
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        name = db["TEST"]["NAME"]
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    _use_test_databases()
    with django_db_blocker.unblock():
        _ensure_control_database()
        call_command("migrate_shards", verbosity=0)
        _truncate_shards()
    yield


def _truncate_shards() -> None:
    from shards.topology import all_shards

    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("TRUNCATE users, email_lookup CASCADE")
        connections[shard.primary_alias].close()


def wait_for_replicas(timeout: float = 5.0) -> None:
    """Block until every replica has replayed everything its primary wrote so far."""
    from shards.health import conninfo
    from shards.topology import all_shards

    for shard in all_shards():
        with psycopg.connect(**{**conninfo(shard.primary_alias), "autocommit": True}) as p:
            target = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(**{**conninfo(shard.replica_alias), "autocommit": True}) as r:
            while True:
                caught_up = r.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()[0]
                if caught_up:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{shard.name} replica did not catch up")
                time.sleep(0.02)


@pytest.fixture
def shards_db(django_db_setup, django_db_blocker):
    """Real database access on every shard; empty shards before and after the test."""
    from shards.health import monitor

    with django_db_blocker.unblock():
        monitor.refresh()
        yield
        for conn in connections.all(initialized_only=True):
            conn.close()
        _truncate_shards()
        wait_for_replicas()


@pytest.fixture
def fresh_map(shards_db, settings):
    """The slot map at version 1 only, read now; whatever a test adds is removed afterwards."""
    from shards import slot_map
    from shards.models import SlotMap

    settings.SLOT_MAP_REFRESH = 0.2
    SlotMap.objects.filter(version__gt=1).delete()
    slot_map.refresh()
    yield
    SlotMap.objects.filter(version__gt=1).delete()
    slot_map.refresh()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def api_env(port: int) -> dict[str, str]:
    """Environment of an API server on the test databases (after django_db_setup)."""
    return {
        **os.environ,
        "PORT": str(port),
        "DJANGO_ENV": "test",
        "SHARD_DB_NAME": settings.SHARD_DB_NAME.removesuffix("_test") + "_test",
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(
            **settings.DATABASES["default"]
        ),
        "WEB_CONCURRENCY": "2",
        "REPLICA_CHECK_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
        "REQUEST_BODY_TIMEOUT": "2",
    }


@pytest.fixture(scope="session")
def api_server(django_db_setup):
    """A real gunicorn with gevent workers on the test databases; yields its base URL."""
    assert not _port_open(API_PORT), f"port {API_PORT} is busy"
    env = api_env(API_PORT)
    log = open(ROOT / "var" / "test-api.log", "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{API_PORT}"
    deadline = time.monotonic() + 60  # a busy 2-core machine boots workers slowly
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health", timeout=5).ok:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        stop_process_group(process)
        raise RuntimeError((ROOT / "var" / "test-api.log").read_text()[-3000:])
    yield base
    stop_process_group(process)
    log.close()

"""A management command that cannot reach a database says which one in one line, soon."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from messenger.commands import unreachable

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "postgres://postgres@127.0.0.1:1/control_test"  # nothing listens on port 1


def manage(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "messenger.settings",
        "SHARD_DB_NAME": "messenger_test",
        "DB_CONNECT_TIMEOUT": "2",
        **env,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [["api_keys", "list"], ["reshard", "--status"], ["seed_users", "--count", "10"], ["migrate"]],
)
def test_a_closed_control_database_is_one_line_naming_host_and_port(command):
    result, seconds = manage(*command, DATABASE_URL=CLOSED)
    assert result.returncode != 0
    assert seconds < 8
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith("database default at 127.0.0.1:1: Connection refused")


def test_a_database_that_accepts_but_never_answers_costs_the_connect_timeout_only():
    with socket.socket() as silent:  # the kernel accepts; nobody ever speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result, seconds = manage(
            "api_keys", "list", DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/control"
        )
    assert result.returncode != 0
    assert 1.5 < seconds < 8
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"cannot connect: database default at 127.0.0.1:{port}: connection timeout expired"
    )


@pytest.mark.cluster
def test_migrate_shards_names_the_unreachable_database_on_its_own_line(shards_db):
    result, seconds = manage(
        "migrate_shards",
        DATABASE_URL=CLOSED,
        CONTROL_DB_PORT=os.environ.get("CONTROL_DB_PORT", "5439"),
    )
    assert result.returncode != 0 and seconds < 20
    assert "Traceback" not in result.stderr
    assert "default: FAILED: cannot connect: database default at 127.0.0.1:1" in result.stdout
    assert "shard_0: up to date" in result.stdout


def test_other_errors_are_not_mistaken_for_an_unreachable_database():
    assert unreachable(ValueError("connection failed")) is None
    assert unreachable(RuntimeError("boom")) is None

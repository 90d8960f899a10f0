"""migrate_shards: every database, one line each, safe to re-run, loud about drift."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command("migrate_shards", *args, stdout=out)
    return out.getvalue()


def test_re_running_changes_nothing_and_prints_a_line_per_database(shards_db):
    lines = run().splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [
        "default",
        "shard_0",
        "shard_1",
        "shard_2",
        "shard_3",
        "shard_4",
    ]
    assert all(line.endswith("up to date") for line in lines)
    assert "identical" in run("--check")


def test_one_shard_rolled_back_is_drift_until_it_is_migrated_again(shards_db):
    try:
        assert "rolled back users.0004" in run("users", "0003", "--shard", "1")
        with pytest.raises(CommandError, match="shard_1"):
            run("--check")
    finally:
        out = run("--shard", "1")
    assert "applied users.0004" in out
    assert "identical" in run("--check")


def test_an_unknown_shard_is_refused(shards_db):
    with pytest.raises(CommandError, match="no shard 9"):
        run("--shard", "9")


def test_a_shard_that_cannot_be_reached_fails_the_command_and_not_the_others(shards_db):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "messenger.settings",
        "SHARD_DB_NAME": "messenger_test",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:{}/control_test".format(
            os.environ.get("CONTROL_DB_PORT", "5439")
        ),
        "SHARD_2_URL": "postgres://postgres@127.0.0.1:1/messenger_test",  # nothing listens
        "DB_CONNECT_TIMEOUT": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate_shards"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "shard_2: FAILED" in result.stdout
    assert "shard_0: up to date" in result.stdout and "shard_4: up to date" in result.stdout
    assert "migrations failed on: shard_2" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "messenger.settings",
        "DJANGO_ENV": "production",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr

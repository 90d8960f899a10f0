"""migrate_shards: every database, one line each, safe to re-run, loud about drift."""

import os
import re
import subprocess
import sys
import time
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


DATABASES = ["default", "shard_0", "shard_1", "shard_2", "shard_3", "shard_4"]
DONE = re.compile(r"^ *(default|shard_\d+): (up to date|applied .*|rolled back .*|FAILED.*)$")


class TimedOutput(StringIO):
    """Remembers when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.written.append((time.monotonic(), text))
        return super().write(text)


def test_re_running_changes_nothing_and_prints_a_line_per_database(shards_db):
    lines = run().splitlines()
    finished = [DONE.match(line) for line in lines[:-1]]
    assert sorted(match[1] for match in finished) == DATABASES
    assert all(match[2] == "up to date" for match in finished)
    assert re.fullmatch(r"done in [\d.]+ s: 0 changed, 6 up to date, 0 failed", lines[-1])
    assert "identical" in run("--check")


def test_each_database_is_printed_when_it_finishes_and_a_slow_one_says_where_it_is(
    shards_db, settings
):
    run("sharded_messages", "0002", "--shard", "1")
    settings.SLOW_TEST_MIGRATION_SECONDS = 2.5
    out = TimedOutput()
    try:
        call_command("migrate_shards", "--progress-every", "0.5", stdout=out)
    finally:
        settings.SLOW_TEST_MIGRATION_SECONDS = 0
        run()
    finished = {}
    for at, text in out.written:
        if match := DONE.match(text.rstrip("\n")):
            finished[match[1]] = (at, match[2])
    assert finished["shard_1"][1] == "applied sharded_messages.0003_slow_for_progress_tests"
    # The others were printed as they finished, seconds before the slow one.
    assert all(finished["shard_1"][0] - finished[a][0] > 1.5 for a in DATABASES if a != "shard_1")
    text = out.getvalue()
    assert re.search(
        r"shard_1: still applying sharded_messages\.0003_slow_for_progress_tests \(\d s\)", text
    )
    assert "shard_0: still" not in text
    assert text.index("still applying") < text.index("shard_1: applied")
    assert text.splitlines()[-1].endswith("1 changed, 5 up to date, 0 failed")


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

"""What manage.py changes for management commands: connections without a pool, and a
database that cannot be reached reported in one line instead of a traceback.

Django's pool retries a failed connect until DB_POOL_TIMEOUT (10 s) and then reports only
that it waited; a command makes a handful of connections, so it connects directly and a dead
database costs it DB_CONNECT_TIMEOUT at most, with libpq's own message."""

import re
import sys

import psycopg
from django.conf import settings

# libpq: 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
_SERVER = re.compile(r'connection to server at "([^"]+)"(?: \([^)]*\))?, port (\d+) failed: ')


def without_pools() -> None:
    """Drop the pool from every database's OPTIONS (before the first connection)."""
    for database in settings.DATABASES.values():
        database.get("OPTIONS", {}).pop("pool", None)


def unreachable(exc: BaseException) -> str | None:
    """One line naming the server and libpq's reason when `exc` is a failed connect
    (refused, timed out, unknown host or database, authentication); None otherwise."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError) and _is_connect_failure(exc):
            return connect_failure_line(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def _is_connect_failure(exc: psycopg.OperationalError) -> bool:
    return isinstance(exc, psycopg.errors.ConnectionTimeout) or str(exc).startswith(
        "connection failed"
    )


def connect_failure_line(exc: BaseException) -> str:
    """`database shard_2 at 127.0.0.1:1: Connection refused`, from libpq's message."""
    message = str(exc).removeprefix("connection failed: ")
    where = next((note for note in getattr(exc, "__notes__", ()) if " at " in note), None)
    if match := _SERVER.search(message):
        where = where or f"database at {match[1]}:{match[2]}"
        message = message[match.end() :]
    reason = message.splitlines()[0].strip() if message.strip() else type(exc).__name__
    return f"{where or 'database'}: {reason}"


def error_line(exc: BaseException) -> str:
    """One line for a command's report: the unreachable server, or the error's first line."""
    line = unreachable(exc)
    if line is not None:
        return f"cannot connect: {line}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


def execute(argv: list[str]) -> None:
    """Run a management command the way manage.py does, with the changes above."""
    from django.core.management import execute_from_command_line

    without_pools()
    try:
        execute_from_command_line(argv)
    except Exception as exc:
        if unreachable(exc) is None:
            raise
        sys.stderr.write(error_line(exc) + "\n")
        sys.exit(1)

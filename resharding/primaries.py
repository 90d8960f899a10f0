"""Direct connections to shard primaries for the work of a move.

Not through PgBouncer and not Django's connections: logical replication needs the
primary's own address (a subscription connects to it), DDL and table scans would outlast
PgBouncer's query_timeout, and a move must not take connections from the API's pools."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from django.conf import settings
from psycopg import errors, sql

T = TypeVar("T")
# A statement waits this long for a lock, then gives up and is tried again: DDL queued
# behind a long transaction would otherwise block every query of the table behind it.
LOCK_TIMEOUT_MS = 200
LOCK_RETRY_FOR = 60.0


def conninfo(shard_id: int) -> str:
    """libpq connection string of the primary of `shard_id` (for a subscription too)."""
    url = settings.SHARD_PRIMARY_URLS[shard_id]
    parts = {
        "host": url["HOST"],
        "port": url["PORT"] or 5432,
        "dbname": url["NAME"],
        "user": url["USER"],
        "password": url["PASSWORD"] or None,
    }
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


def connect(shard_id: int) -> psycopg.Connection:
    """An autocommit connection to the primary of `shard_id`, statements bounded so a
    stuck one cannot hang a move, lock waits short (see `retrying`)."""
    return psycopg.connect(
        conninfo(shard_id),
        autocommit=True,
        connect_timeout=settings.DB_CONNECT_TIMEOUT,
        options=f"-c statement_timeout=300s -c lock_timeout={LOCK_TIMEOUT_MS}ms",
        **settings.DB_TCP_OPTIONS,
    )


def retrying(step: Callable[..., T], *args) -> T:
    """step(*args), again after a lock timeout, for up to LOCK_RETRY_FOR seconds: each
    attempt holds up the table's other queries for LOCK_TIMEOUT_MS at most."""
    deadline = time.monotonic() + LOCK_RETRY_FOR
    while True:
        try:
            return step(*args)
        except errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)


def slot_list(slots: list[int]) -> sql.Composable:
    """`1, 2, 3` for an IN list inside DDL (a publication's row filter takes no parameters)."""
    return sql.SQL(", ").join(sql.Literal(int(slot)) for slot in slots)

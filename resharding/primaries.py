"""Direct connections to shard primaries for the work of a move.

Not through PgBouncer and not Django's connections: logical replication needs the
primary's own address (a subscription connects to it), DDL and table scans would outlast
PgBouncer's query_timeout, and a move must not take connections from the API's pools."""

import psycopg
from django.conf import settings
from psycopg import sql


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
    """An autocommit connection to the primary of `shard_id`, sessions in UTC (checksums
    compare timestamps as text), statements bounded so a stuck one cannot hang a move."""
    return psycopg.connect(
        conninfo(shard_id),
        autocommit=True,
        connect_timeout=settings.DB_CONNECT_TIMEOUT,
        options="-c TimeZone=UTC -c statement_timeout=300s -c lock_timeout=2s",
        **settings.DB_TCP_OPTIONS,
    )


def slot_list(slots: list[int]) -> sql.Composable:
    """`1, 2, 3` for an IN list inside DDL (a publication's row filter takes no parameters)."""
    return sql.SQL(", ").join(sql.Literal(int(slot)) for slot in slots)

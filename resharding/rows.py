"""Row work of a move outside replication: per-shard user counters and deleting the copies
a shard no longer owns.

Replication applies rows without firing triggers (the apply worker runs with
session_replication_role = replica), so the trigger-kept counters of a target do not count
the rows it received; the switch moves that many from the source's counter to the target's,
exactly once per shard (a row in reshard_applied, in the same transaction). Copies are then
deleted with triggers off too: they are no longer counted, and the fence must not refuse it.
SQL: counters are adjusted, not recounted, and deletes run in batches by primary key."""

import psycopg
from psycopg import sql

from resharding.tables import MovedTable

APPLIED_TABLE = """
CREATE TABLE IF NOT EXISTS reshard_applied (
    job integer NOT NULL,
    step text NOT NULL,
    PRIMARY KEY (job, step)
)
"""
DELETE_BATCH = 5000


def prepare(conn: psycopg.Connection) -> None:
    conn.execute(APPLIED_TABLE)


def count_rows(conn: psycopg.Connection, table: MovedTable, slots: list[int]) -> int:
    (count,) = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE slot = ANY(%s::smallint[])").format(
            sql.Identifier(table.name)
        ),
        [slots],
    ).fetchone()
    return int(count)


def table_bytes(conn: psycopg.Connection, table: MovedTable) -> tuple[int, int]:
    """(bytes with indexes, rows) of the whole table, for the plan's estimate."""
    size, rows = conn.execute(
        "SELECT pg_total_relation_size(%s::regclass), count(*) FROM "
        + sql.Identifier(table.name).as_string(conn),
        [table.name],
    ).fetchone()
    return int(size), int(rows)


def adjust_user_count(conn: psycopg.Connection, job: int, step: str, delta: int) -> None:
    """Add `delta` to this shard's user counter, once for (job, step)."""
    conn.execute(
        "WITH applied AS (INSERT INTO reshard_applied (job, step) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1)"
        " UPDATE user_counts SET n = n + %s WHERE bucket = 0 AND EXISTS (SELECT FROM applied)",
        [job, step, delta],
    )


def delete_slots(conn: psycopg.Connection, table: MovedTable, slots: list[int]) -> int:
    """Delete the rows of `slots` in batches, triggers off; the number deleted."""
    keys = [
        key
        for (key,) in conn.execute(
            sql.SQL("SELECT {} FROM {} WHERE slot = ANY(%s::smallint[])").format(
                sql.Identifier(table.pk), sql.Identifier(table.name)
            ),
            [slots],
        )
    ]
    delete = sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
        sql.Identifier(table.name), sql.Identifier(table.pk)
    )
    for start in range(0, len(keys), DELETE_BATCH):
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(delete, [keys[start : start + DELETE_BATCH]])
    return len(keys)

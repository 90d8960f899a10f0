"""The write fence of a move's cutover, enforced by the source database itself.

A row trigger refuses any write to a row of a fenced slot with SQLSTATE P0R01
(shards.access.FENCE_SQLSTATE), so a worker that has not learnt the new slot map yet cannot
write where the slot no longer lives: it waits for the new map and retries on the new owner.
Installing the trigger takes a SHARE ROW EXCLUSIVE lock, which waits for the writes in flight
to finish: once it is in place, no earlier write can still commit.

A fence is a lease: it lapses by itself `RESHARD_FENCE_LEASE` seconds after it was last
renewed, so a move that dies before its switch cannot block writes for longer. After the
switch it is made permanent, and dropped once the moved rows are deleted.

SQL because triggers and their functions are DDL."""

import psycopg
from psycopg import sql

from resharding.tables import MovedTable

FENCE_OBJECTS = """
CREATE TABLE IF NOT EXISTS reshard_fence (
    slot smallint PRIMARY KEY,
    until timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION reshard_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moving smallint := CASE WHEN TG_OP = 'DELETE' THEN OLD.slot ELSE NEW.slot END;
BEGIN
    IF EXISTS (SELECT 1 FROM reshard_fence f
               WHERE f.slot = moving AND f.until > clock_timestamp()) THEN
        RAISE EXCEPTION 'slot % of % is moving to another shard', moving, TG_TABLE_NAME
            USING ERRCODE = 'P0R01';
    END IF;
    RETURN NULL;
END $$;
"""


def prepare(conn: psycopg.Connection) -> None:
    conn.execute(FENCE_OBJECTS)


def raise_fence(
    conn: psycopg.Connection, tables: list[MovedTable], slots: list[int], lease: float
) -> None:
    """Fence `slots` for `lease` seconds; returns once no write to them can commit."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO reshard_fence (slot, until)"
            " SELECT unnest(%s::smallint[]), clock_timestamp() + make_interval(secs => %s)"
            " ON CONFLICT (slot) DO UPDATE SET until = EXCLUDED.until",
            [slots, lease],
        )
        for table in tables:
            conn.execute(
                sql.SQL(
                    "CREATE OR REPLACE TRIGGER reshard_fence AFTER INSERT OR UPDATE OR DELETE"
                    " ON {} FOR EACH ROW EXECUTE FUNCTION reshard_fence()"
                ).format(sql.Identifier(table.name))
            )


def renew(conn: psycopg.Connection, slots: list[int], lease: float) -> bool:
    """Extend the lease of a fence that still holds; False if any of it lapsed (writes may
    have gone through since: the cutover must start over)."""
    renewed = conn.execute(
        "UPDATE reshard_fence SET until = clock_timestamp() + make_interval(secs => %s)"
        " WHERE slot = ANY(%s::smallint[]) AND until > clock_timestamp()",
        [lease, slots],
    ).rowcount
    return renewed == len(slots)


def make_permanent(conn: psycopg.Connection, slots: list[int]) -> None:
    conn.execute(
        "UPDATE reshard_fence SET until = 'infinity' WHERE slot = ANY(%s::smallint[])", [slots]
    )


def lift(conn: psycopg.Connection, tables: list[MovedTable], slots: list[int]) -> None:
    """Remove the fence of `slots`; the triggers go once no slot is fenced here."""
    if _exists(conn):
        conn.execute("DELETE FROM reshard_fence WHERE slot = ANY(%s::smallint[])", [slots])
        if conn.execute("SELECT 1 FROM reshard_fence LIMIT 1").fetchone():
            return
    for table in tables:
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS reshard_fence ON {}").format(sql.Identifier(table.name))
        )


def _exists(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('reshard_fence') IS NOT NULL").fetchone()[0]

"""Copy and catch-up by PostgreSQL's logical replication: a publication on the source limited
to the moving slots, a subscription on the target, and marker rows to know when the target
has applied everything the source committed before them.

SQL throughout: publications, subscriptions and replica identities are DDL, which the ORM
does not speak. Every step checks what already exists, so a move interrupted anywhere can run
it again."""

import psycopg
from psycopg import sql

from resharding.primaries import conninfo, slot_list
from resharding.tables import MovedTable

# Rows a source writes to learn when a target has caught up: replicated in commit order, so
# once a marker is on the target, so is every change committed on the source before it.
MARKER_TABLE = """
CREATE TABLE IF NOT EXISTS reshard_marker (
    name text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def prepare_shard(conn: psycopg.Connection) -> None:
    conn.execute(MARKER_TABLE)


def publish(
    conn: psycopg.Connection, name: str, tables: list[MovedTable], slots: list[int]
) -> None:
    """On the source: identity (key, slot) on each table, then the publication."""
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                sql.Identifier(table.name), sql.Identifier(table.identity_index)
            )
        )
    if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone():
        return
    filtered = [
        sql.SQL("{} WHERE (slot IN ({}))").format(sql.Identifier(t.name), slot_list(slots))
        for t in tables
    ]
    conn.execute(
        sql.SQL("CREATE PUBLICATION {} FOR TABLE {}, reshard_marker").format(
            sql.Identifier(name), sql.SQL(", ").join(filtered)
        )
    )


def subscribe(conn: psycopg.Connection, name: str, source: int) -> None:
    """On the target: a subscription to the source's publication of the same name, which
    copies the rows there now and then streams every change."""
    if conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", [name]).fetchone():
        return
    conn.execute(
        sql.SQL(
            "CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {name}"
            " WITH (slot_name = {name}, copy_data = true)"
        ).format(name=sql.Identifier(name), conninfo=sql.Literal(conninfo(source)))
    )


def subscribed(conn: psycopg.Connection, names: list[str]) -> bool:
    """Whether any of these subscriptions exists here."""
    found = conn.execute("SELECT 1 FROM pg_subscription WHERE subname = ANY(%s)", [names])
    return found.fetchone() is not None


def sync_states(conn: psycopg.Connection, names: list[str]) -> dict[str, str]:
    """On a target: 'table of subscription' -> state ('r' ready: copied, streaming)."""
    rows = conn.execute(
        "SELECT s.subname || '/' || r.srrelid::regclass, r.srsubstate"
        " FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid"
        " WHERE s.subname = ANY(%s)",
        [names],
    ).fetchall()
    return dict(rows)


def rows_being_copied(conn: psycopg.Connection) -> int:
    """On a target: rows the initial copies in progress have written so far."""
    row = conn.execute(
        "SELECT coalesce(sum(tuples_processed), 0) FROM pg_stat_progress_copy"
        " WHERE datname = current_database()"
    ).fetchone()
    return int(row[0])


def lag_bytes(conn: psycopg.Connection, names: list[str]) -> int:
    """On a source: WAL its subscribers have not confirmed yet."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)"
        " FROM pg_replication_slots WHERE slot_name = ANY(%s)",
        [names],
    ).fetchone()
    return max(int(row[0]), 0)


def put_marker(conn: psycopg.Connection, name: str) -> None:
    conn.execute(
        "INSERT INTO reshard_marker (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", [name]
    )


def has_marker(conn: psycopg.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM reshard_marker WHERE name = %s", [name]).fetchone())


def position(conn: psycopg.Connection) -> int:
    """The primary's WAL position now (as the consistency tokens count it)."""
    (lsn,) = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(lsn)


def unsubscribe(conn: psycopg.Connection, name: str) -> None:
    """On the target: drop the subscription (and with it the source's replication slot)."""
    if conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", [name]).fetchone():
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))


def unpublish(
    conn: psycopg.Connection, name: str, tables: list[MovedTable], still_publishing: bool
) -> None:
    """On the source: drop the publication and any slot left by a subscription that could
    not drop it; back to the default identity once no other move publishes from here."""
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        " WHERE slot_name = %s AND NOT active",
        [name],
    )
    if not still_publishing:
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {} REPLICA IDENTITY DEFAULT").format(
                    sql.Identifier(table.name)
                )
            )


def clear_markers(conn: psycopg.Connection, prefix: str) -> None:
    conn.execute("DELETE FROM reshard_marker WHERE name LIKE %s", [prefix + "%"])

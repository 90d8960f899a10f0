"""VDiff-style verification: per slot, the row count and a checksum of every row, computed
on the source and on the target, must be equal. Run while the fence holds, so neither side
changes under it. SQL because the checksum is an aggregate of row hashes the ORM cannot
express."""

import psycopg
from psycopg import sql

from resharding.tables import MovedTable

Summary = dict[int, tuple[int, int]]  # slot -> (rows, checksum)


def summarise(conn: psycopg.Connection, table: MovedTable, slots: list[int]) -> Summary:
    """Count and sum of the 64-bit hashes of each row's values, per slot (hashing the
    values, not their text: both sides run the same PostgreSQL, and it is several times
    cheaper than formatting every timestamp)."""
    row = sql.SQL("({})").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in table.columns)
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT slot, count(*), sum(hash_record_extended({}, 0))::text FROM {}"
            " WHERE slot = ANY(%s::smallint[]) GROUP BY slot"
        ).format(row, sql.Identifier(table.name)),
        [slots],
    ).fetchall()
    return {int(slot): (int(count), int(checksum)) for slot, count, checksum in rows}


def differences(source: Summary, target: Summary) -> list[int]:
    """The slots whose rows differ."""
    return sorted(
        slot for slot in source.keys() | target.keys() if source.get(slot) != target.get(slot)
    )

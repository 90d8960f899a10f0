"""Run a read or a write on one shard, on the right database, with a clear failure.

Reads go to the replica when the health view says it is usable and, if the client holds a
consistency token, has replayed the client's last write on that shard; otherwise to the
primary. A replica that fails mid-request is reported and the read retried on the primary;
a primary that fails is replaced by its replica when that cannot break read-your-writes.

Writes run in one transaction on the primary and return the WAL position after commit.
A connection failure before COMMIT was sent means nothing was written (ShardUnavailable);
a failure during COMMIT means the outcome is unknown (WriteOutcomeUnknown).

A database the health view knows to be down is not tried at all, so its shard fails in
microseconds instead of making every request wait for a connection timeout.

`fn(alias)` runs with `alias` pinned (`shards.router.pinned`): the ORM queries in it go where
this module decided, the router's own choice for a first read, the primary for a fallback.
"""

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from psycopg_pool import PoolTimeout

from shards.consistency import lsn_to_int, request_positions
from shards.errors import ServerBusy, ShardUnavailable, WriteOutcomeUnknown
from shards.health import monitor
from shards.router import pinned, read_alias
from shards.topology import Shard, shard_for_alias

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Errors that mean "this database is not reachable now", as opposed to a bad statement.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


class KnownDown(OperationalError):
    """The health view says the database is down: not even tried."""


def _close(alias: str) -> None:
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def _attempt(alias: str, fn: Callable[[str], T]) -> T:
    """fn(alias); after a connection error, once more on a fresh pool if the database
    answers a direct probe (the pool held connections that died in a restart), else the
    database is reported down and the error raised.

    Only for work that changes nothing when it fails: a read, or a transaction that did
    not reach COMMIT."""
    if not monitor.is_up(alias):
        raise KnownDown(f"{alias} is down")
    try:
        with pinned(alias):
            return fn(alias)
    except CONNECTION_ERRORS as exc:
        _raise_if_busy(alias, exc)
        _close(alias)
        monitor.reset_pool(alias)
        if not monitor.probe(alias):
            monitor.report_down(alias)
            raise
    try:
        with pinned(alias):
            return fn(alias)
    except CONNECTION_ERRORS as exc:
        _raise_if_busy(alias, exc)
        _close(alias)
        monitor.report_down(alias)
        raise


def _raise_if_busy(alias: str, exc: BaseException) -> None:
    if isinstance(exc.__cause__, PoolTimeout):
        # Overload, not a failure: marking the database down would fail every request.
        raise ServerBusy([_shard_name(alias)], "server busy: retry shortly") from exc


def _shard_name(alias: str) -> str:
    return shard_for_alias(alias).name


def run_read(
    shard: Shard,
    read: Callable[[], T],
    *,
    confirm_on_primary: Callable[[T], bool] | None = None,
) -> T:
    """read() on the replica or the primary of `shard`: where the router sends it (the
    replica when it holds the request's consistency token), then the fallbacks.

    `confirm_on_primary(result)` says when a replica's answer must be checked on the
    primary (a row missing on the replica may just not have arrived yet)."""
    min_lsn = request_positions().get(shard.id)

    def fn(alias: str) -> T:
        return read()

    if read_alias(shard) == shard.replica_alias:
        try:
            result = _attempt(shard.replica_alias, fn)
        except CONNECTION_ERRORS:
            pass  # the primary answers instead
        else:
            if confirm_on_primary is None or not confirm_on_primary(result):
                return result
            try:
                return _attempt(shard.primary_alias, fn)
            except CONNECTION_ERRORS as exc:
                raise ShardUnavailable([shard.name]) from exc
    try:
        return _attempt(shard.primary_alias, fn)
    except CONNECTION_ERRORS as exc:
        state = monitor.state(shard.id)
        # Fall back to the replica only if it holds what this client wrote.
        if state.replica_reachable and (
            min_lsn is None or (state.replica_replay_lsn or 0) >= min_lsn
        ):
            try:
                return _attempt(shard.replica_alias, fn)
            except CONNECTION_ERRORS:
                pass
        raise ShardUnavailable([shard.name]) from exc


def read_primary(shard: Shard, read: Callable[[], T]) -> T:
    """read() on the primary only: for reads that decide a write."""
    try:
        return _attempt(shard.primary_alias, lambda alias: read())
    except CONNECTION_ERRORS as exc:
        raise ShardUnavailable([shard.name]) from exc


def current_wal_lsn(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return lsn_to_int(cursor.fetchone()[0])


def _refused_before_running(exc: BaseException) -> bool:
    """Whether the server or PgBouncer answered the statement with an error (so it did not
    run), as opposed to the connection breaking while it was in flight. Connection errors
    that come from an error message carry a SQLSTATE; a broken socket has none."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) is not None or isinstance(exc, KnownDown)


def _unknown_outcome(shard: Shard) -> WriteOutcomeUnknown:
    return WriteOutcomeUnknown(
        [shard.name],
        f"{shard.name} failed while committing: the write may have been applied;"
        " retrying the same request is safe",
    )


def run_write(
    shard: Shard, write: Callable[[], T], *, atomic: bool = True, wal_position: bool = True
) -> tuple[T, int | None]:
    """(write() committed on the primary, WAL position after the commit or None).

    `atomic=False` is for work of one statement, which autocommit makes atomic anyway:
    it saves the BEGIN and COMMIT round trips. `wal_position=False` skips reading the
    position when no consistency token needs it."""
    body_done = False

    def in_transaction(alias: str) -> T:
        nonlocal body_done
        if body_done:
            # COMMIT was under way when the connection died: never run the body twice.
            raise _unknown_outcome(shard)
        with transaction.atomic(using=alias):
            result = write()
            body_done = True
        return result

    def single_statement(alias: str) -> T:
        connections[alias].ensure_connection()
        try:
            return write()
        except CONNECTION_ERRORS as exc:
            if _refused_before_running(exc):
                raise
            raise _unknown_outcome(shard) from exc

    try:
        result = _attempt(shard.primary_alias, in_transaction if atomic else single_statement)
    except WriteOutcomeUnknown:
        _close(shard.primary_alias)
        raise
    except CONNECTION_ERRORS as exc:
        if body_done:
            raise _unknown_outcome(shard) from exc
        raise ShardUnavailable([shard.name]) from exc
    if not wal_position:
        return result, None
    try:
        lsn = current_wal_lsn(shard.primary_alias)
    except CONNECTION_ERRORS:
        # Committed, but no position to hand out: reads fall back to the primary on a miss.
        logger.warning("%s: committed but could not read the WAL position", shard.name)
        _close(shard.primary_alias)
        lsn = None
    return result, lsn

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

The callers' functions take no argument: they run ORM queries, and this module pins the
alias it chose (`shards.router.pinned`) while they run, so the router sends them there: its
own choice for a first read, the primary for a fallback or a write.

Every call is bounded (shards/timeouts.py): a read, replica attempt and primary fallback
included, within DB_TIMEOUT (+ DB_REPLICA_TIMEOUT when the primary fails and the replica
takes over); a write or a read on the primary within DB_TIMEOUT. A timed-out call is not
retried (its time is spent): the database is probed in the background and the request
answers 503 at once. A statement that timed out during a write may have run, so that write's
outcome is unknown unless COMMIT was never sent. Waiting too long for a pooled connection is
`server_busy` only while the database answers; when it does not, the pool is full of calls
stuck on it and the answer is `shard_unavailable`.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    InternalError,
    OperationalError,
    connections,
    transaction,
)
from psycopg_pool import PoolTimeout

from shards import slot_map
from shards.consistency import required_position
from shards.errors import ServerBusy, ShardUnavailable, SlotMoving, WriteOutcomeUnknown
from shards.health import monitor, replay_position, wal_position
from shards.router import pinned, replica_can_serve
from shards.timeouts import (
    DatabaseTimeout,
    deadline_in,
    discard,
    discard_on_expiry,
    remaining,
    time_limit,
)
from shards.topology import Shard, shard_for_alias

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Errors that mean "this database is not reachable now", as opposed to a bad statement.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


class KnownDown(OperationalError):
    """The health view says the database is down: not even tried."""


class ReplicaBehind(Exception):
    """The replica has not replayed the client's last write yet: not read. (Not an
    OperationalError: the replica is fine, nothing to probe or retry.)"""


def _close(alias: str) -> None:
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def _run(alias: str, fn: Callable[[str], T], deadline: float) -> T:
    """fn(alias) within the time left, on `alias`. An InternalError the server did not send
    (no SQLSTATE: psycopg lost the thread of the protocol, as on a connection PgBouncer
    answers for a server that was just killed) is a failure of the connection, not of the
    statement: it is handled like one instead of ending in a 500. An answer is reported to
    the health monitor (`monitor.answered`)."""
    with time_limit(alias, remaining(deadline)), pinned(alias):
        try:
            result = fn(alias)
        except InternalError as exc:
            if not _lost_protocol(exc):
                raise
            raise OperationalError(str(exc)) from exc
    monitor.answered(alias)
    return result


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the psycopg error behind a Django one: None when no server sent it."""
    return getattr(exc.__cause__, "sqlstate", None)


def _lost_protocol(exc: InternalError) -> bool:
    """An InternalError psycopg raised itself (no SQLSTATE: the server did not send it)."""
    return _sqlstate(exc) is None


def _attempt(alias: str, fn: Callable[[str], T], deadline: float) -> T:
    """fn(alias) before `deadline`; after a connection error, once more on a fresh pool if
    the database answers a direct probe (the pool held connections that died in a restart),
    else the database is reported down and the error raised. A timeout is not retried.

    Only for work that changes nothing when it fails: a read, or a transaction that did
    not reach COMMIT."""
    if not monitor.is_up(alias):
        raise KnownDown(f"{alias} is down")
    try:
        return _run(alias, fn, deadline)
    except CONNECTION_ERRORS as exc:
        _after_failure(alias, exc)
        _close(alias)
        monitor.reset_pool(alias)
        if remaining(deadline) <= 0 or not monitor.probe(alias):
            monitor.report_down(alias, exc)
            raise
    try:
        return _run(alias, fn, deadline)
    except CONNECTION_ERRORS as exc:
        _after_failure(alias, exc)
        _close(alias)
        monitor.report_down(alias, exc)
        raise


def _waited_for_pool(exc: BaseException) -> bool:
    """The call never got a connection: it sent nothing."""
    if isinstance(exc, DatabaseTimeout):
        return not exc.connected
    return isinstance(exc.__cause__, PoolTimeout)


def _pool_saturated(alias: str) -> bool:
    """Every connection the pool may open is open (and lent): waiting was for one of them
    to come back. A pool still below its size was waiting for a new connection, i.e. for
    the database to accept one."""
    pool = connections[alias].pool  # Django's pool of the alias (None without pooling)
    if pool is None:
        return False
    return pool.get_stats().get("pool_size", 0) >= pool.max_size


def _after_failure(alias: str, exc: BaseException) -> None:
    """Raise what the failure means when it is not a plain connection error: overload
    (ServerBusy) or a timeout (the database is suspect: probed in the background)."""
    if _waited_for_pool(exc) and monitor.answering(alias) and _pool_saturated(alias):
        # Overload, not a failure: marking the database down would fail every request.
        raise ServerBusy([_shard_name(alias)], "server busy: retry shortly") from exc
    if isinstance(exc, DatabaseTimeout) or _waited_for_pool(exc):
        # Its time is spent: no retry. A full pool on a database that does not answer is
        # that database's failure, not overload.
        _close(alias)
        monitor.suspect(alias)
        raise exc


def _shard_name(alias: str) -> str:
    return shard_for_alias(alias).name


def replay_lsn(alias: str) -> int:
    """The replica's position now (the health view's may be a probe interval old)."""
    with connections[alias].cursor() as cursor:
        return replay_position(cursor)


def _read_replica_instead(shard: Shard, fn: Callable[[str], T], min_lsn: int | None) -> T:
    """fn on the replica when the primary failed, if the replica holds the client's last
    write: by the health view, or else by asking the replica for its position now (right
    after a primary dies the replica usually has the write the last probe predates)."""
    state = monitor.state(shard.id)
    if not state.replica_reachable:
        raise KnownDown(f"{shard.replica_alias} is down")
    known = min_lsn is None or (state.replica_replay_lsn or 0) >= min_lsn

    def checked(alias: str) -> T:
        if not known and replay_lsn(alias) < min_lsn:
            raise ReplicaBehind(f"{alias} has not replayed {min_lsn:x}")
        return fn(alias)

    return _attempt(shard.replica_alias, checked, deadline_in(settings.DB_REPLICA_TIMEOUT))


def run_read(
    shard: Shard,
    read: Callable[[], T],
    *,
    confirm_on_primary: Callable[[T], bool] | None = None,
) -> T:
    """read() on the replica or the primary of `shard`: where the router would send it
    (the replica when it is usable and holds the request's consistency token), else the
    primary, then the fallbacks.

    `confirm_on_primary(result)` says when a replica's answer must be checked on the
    primary (a row missing on the replica may just not have arrived yet)."""
    min_lsn = required_position(shard.id)

    def fn(alias: str) -> T:
        return read()

    deadline = deadline_in(settings.DB_TIMEOUT)
    replica_tried = False
    if (
        not replica_can_serve(shard, min_lsn)
        and min_lsn is not None
        and not monitor.answering(shard.primary_alias)
    ):
        # The primary is down or suspect: the replica probably holds the write by now.
        replica_tried = True
        try:
            return _read_replica_instead(shard, fn, min_lsn)
        except (*CONNECTION_ERRORS, ReplicaBehind, ServerBusy):
            pass
    elif replica_can_serve(shard, min_lsn):
        replica_deadline = min(deadline, deadline_in(settings.DB_REPLICA_TIMEOUT))
        try:
            result = _attempt(shard.replica_alias, fn, replica_deadline)
        except (*CONNECTION_ERRORS, ServerBusy):
            pass  # the primary answers instead, in the time left
        else:
            if confirm_on_primary is None or not confirm_on_primary(result):
                return result
            try:
                return _attempt(shard.primary_alias, fn, deadline)
            except CONNECTION_ERRORS as exc:
                raise ShardUnavailable([shard.name]) from exc
    try:
        return _attempt(shard.primary_alias, fn, deadline)
    except CONNECTION_ERRORS as exc:
        # Fall back to the replica only if it holds what this client wrote.
        if not replica_tried:
            try:
                return _read_replica_instead(shard, fn, min_lsn)
            except (*CONNECTION_ERRORS, ReplicaBehind, ServerBusy):
                pass
        raise ShardUnavailable([shard.name]) from exc


def read_primary(shard: Shard, read: Callable[[], T]) -> T:
    """read() on the primary only: for reads that decide a write."""
    try:
        return _attempt(shard.primary_alias, lambda alias: read(), deadline_in(settings.DB_TIMEOUT))
    except CONNECTION_ERRORS as exc:
        raise ShardUnavailable([shard.name]) from exc


def current_wal_lsn(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        return wal_position(cursor)


def _refused_before_running(exc: BaseException) -> bool:
    """Whether the server or PgBouncer answered the statement with an error (so it did not
    run), as opposed to the connection breaking while it was in flight. Connection errors
    that come from an error message carry a SQLSTATE; a broken socket has none."""
    if isinstance(exc, DatabaseTimeout):
        return not exc.connected  # interrupted while waiting for a connection: nothing sent
    return _sqlstate(exc) is not None or isinstance(exc, KnownDown)


def _unknown_outcome(shard: Shard) -> WriteOutcomeUnknown:
    return WriteOutcomeUnknown(
        [shard.name],
        f"{shard.name} failed while committing: the write may have been applied;"
        " retrying the same request is safe",
    )


# The SQLSTATE of a write refused by a resharding fence (the trigger `reshard_fence` that
# `manage.py reshard` installs on a source shard while its slots move).
FENCE_SQLSTATE = "P0R01"
_MAP_POLL = 0.05


def _fenced(exc: BaseException) -> bool:
    return _sqlstate(exc) == FENCE_SQLSTATE


def _wait_for_new_map(shard: Shard) -> SlotMoving:
    """Wait, briefly, until the slot map changes (the move switched, or was aborted and the
    fence lifted); the error to raise so that the caller reroutes and retries."""
    seen = slot_map.current().version
    waited_until = time.monotonic() + settings.SLOT_MAP_REFRESH + 0.5
    while time.monotonic() < waited_until and slot_map.refresh().version == seen:
        time.sleep(_MAP_POLL)
    return SlotMoving([shard.name], f"{shard.name}: slots are moving to another shard")


def retried_while_moving(fn: Callable[..., T]) -> Callable[..., T]:
    """Run fn again, rerouted, when a write met a resharding fence: clients see a pause of
    the cutover, not an error, unless it lasts longer than RESHARD_WRITE_WAIT. fn must undo
    its own partial work before SlotMoving leaves it (nothing of the fenced write ran)."""

    @wraps(fn)
    def wrapper(*args, **kwargs) -> T:
        deadline = time.monotonic() + settings.RESHARD_WRITE_WAIT
        while True:
            try:
                return fn(*args, **kwargs)
            except SlotMoving:
                if time.monotonic() >= deadline:
                    raise

    return wrapper


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
        try:
            with transaction.atomic(using=alias), discard_on_expiry(alias):
                result = write()
                body_done = True
        except Exception as exc:
            if not body_done:
                raise
            # COMMIT failed, or its time limit fired (Django then also fails to restore
            # autocommit on the half-finished connection): whether it committed is unknown.
            discard(alias)
            raise _unknown_outcome(shard) from exc
        return result

    def single_statement(alias: str) -> T:
        connections[alias].ensure_connection()
        try:
            return write()
        except CONNECTION_ERRORS as exc:
            if _refused_before_running(exc):
                raise
            raise _unknown_outcome(shard) from exc
        except InternalError as exc:
            if not _lost_protocol(exc):
                raise
            # A broken protocol (see _run): the statement may have run.
            raise _unknown_outcome(shard) from exc

    deadline = deadline_in(settings.DB_TIMEOUT)
    try:
        result = _attempt(
            shard.primary_alias, in_transaction if atomic else single_statement, deadline
        )
    except WriteOutcomeUnknown:
        _close(shard.primary_alias)
        raise
    except DatabaseTimeout as exc:
        # Interrupted with a connection: the statement (or COMMIT) may have run. Only a
        # transaction interrupted before its COMMIT was sent is known to have changed nothing.
        if exc.connected and (body_done or not atomic):
            raise _unknown_outcome(shard) from exc
        raise ShardUnavailable([shard.name]) from exc
    except CONNECTION_ERRORS as exc:
        if body_done:
            raise _unknown_outcome(shard) from exc
        raise ShardUnavailable([shard.name]) from exc
    except DatabaseError as exc:
        if _fenced(exc):
            raise _wait_for_new_map(shard) from exc
        raise
    if not wal_position:
        return result, None
    try:
        # The write is done: its position gets what is left of the time, at least a moment.
        with time_limit(shard.primary_alias, max(remaining(deadline), 0.2)):
            lsn = current_wal_lsn(shard.primary_alias)
    except CONNECTION_ERRORS:
        # Committed, but no position to hand out: reads fall back to the primary on a miss.
        logger.warning("%s: committed but could not read the WAL position", shard.name)
        _close(shard.primary_alias)
        lsn = None
    return result, lsn

"""Client-side time limits of database calls.

A database that stops answering (a partition drops packets: no reset, no FIN) would keep a
request waiting until TCP gives up, minutes later. Two layers bound the wait:

- under gunicorn's gevent worker, `time_limit` interrupts the call itself: a blocked socket
  read is a greenlet waiting on the hub, so a gevent.Timeout ends it at the deadline, whether
  the call waits for a pooled connection, a connect or a statement's answer. The connection
  it used is then discarded (closed, never returned to the pool: its protocol state is
  unknown);
- everywhere (management commands, tests, pool workers), the libpq TCP settings of
  settings.DB_TCP_OPTIONS: keepalives and `tcp_user_timeout` make the kernel drop a connection whose
  peer stopped acknowledging, so even a call no greenlet timer watches fails eventually.

Server-side limits (statement_timeout, PgBouncer's query_timeout) are the last layer; they
free the servers' work when a client gave up (database/postgres, database/pgbouncer).
"""

import contextlib
import time
from collections.abc import Iterator

from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from shards.scatter import gevent_patched


class DatabaseTimeout(OperationalError):
    """A database call ran past its client-side limit; its connection was discarded.

    `connected` says whether the call had a connection (it may have sent statements) or was
    still waiting for one (nothing was sent)."""

    connected = True


class _Expired(Exception):
    """Raised into the greenlet by its timer; translated to DatabaseTimeout."""


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


def remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


@contextlib.contextmanager
def time_limit(
    alias: str, seconds: float, wrapper: BaseDatabaseWrapper | None = None
) -> Iterator[None]:
    """Run the block within `seconds` (under gevent); past it, discard the alias's
    connection (`wrapper`, when the block uses one of its own, else the request's) and raise
    DatabaseTimeout. Outside gevent only the TCP limits apply."""
    if not gevent_patched():
        yield
        return
    import gevent

    # An Exception, not gevent.Timeout (a BaseException): psycopg_pool then withdraws a
    # client that gave up waiting, instead of later handing it a connection nobody returns.
    expired = _Expired()
    timer = gevent.Timeout(max(seconds, 0.001), expired)
    timer.start()
    try:
        yield
    except _Expired as exc:
        if exc is not expired:
            raise  # an outer limit: not ours to translate
        wrapper = wrapper or connections[alias]
        connected = wrapper.connection is not None
        discard(alias, wrapper)
        error = DatabaseTimeout(f"{alias} did not answer within {seconds:.2f}s")
        error.connected = connected
        raise error from None
    finally:
        timer.close()


@contextlib.contextmanager
def discard_on_expiry(alias: str) -> Iterator[None]:
    """Inside a transaction block: when the time limit fires, close the connection at once,
    so that leaving the block sends nothing (Django would send a ROLLBACK, and a database
    that does not answer would hold it past the limit)."""
    try:
        yield
    except _Expired:
        discard(alias)
        raise


def discard(alias: str, wrapper: BaseDatabaseWrapper | None = None) -> None:
    """Close the alias's connection for good: an interrupted call leaves it mid-protocol.
    Closing the psycopg connection first makes the pool drop it instead of reusing it."""
    wrapper = wrapper or connections[alias]
    raw = wrapper.connection
    if raw is not None:
        with contextlib.suppress(Exception):
            raw.close()
    with contextlib.suppress(Exception):
        wrapper.close()

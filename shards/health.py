"""Health and lag of every shard's primary and replica, as this process last saw them.

Each worker keeps one cheap, periodically refreshed view (REPLICA_CHECK_INTERVAL) instead of
asking the databases on every request. Under gunicorn a background greenlet refreshes it;
elsewhere it is refreshed on demand when older than the interval.

Lag in seconds is measured against WAL positions, because `pg_stat_replication.replay_lag`
does not show a paused replay and the age of the last replayed commit grows on an idle
primary: each probe records when it first saw the primary at a position, and the lag is the
time since the oldest recorded position the replica has not replayed yet (zero when it has
replayed everything seen so far).

Every probe is bounded (DB_PROBE_TIMEOUT) and a shard's primary and replica are probed at
once, so a database that stops answering is marked down one probe timeout after the probe
that first misses it. A request whose call on a database timed out asks for an immediate
probe (`suspect`): until it answers, a full pool on that database is not called overload.
"""

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, replace

import psycopg
from django.conf import settings
from django.db import connections

from shards import loop_lag
from shards.consistency import lsn_to_int
from shards.scatter import gevent_patched, scatter
from shards.topology import Shard, all_shards, shard_for_alias

logger = logging.getLogger(__name__)

_PRIMARY_SQL = "SELECT pg_current_wal_lsn()::text"
_REPLICA_SQL = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"
_REPLAY_SQL = "SELECT pg_last_wal_replay_lsn()::text"
# A probe's own limit (_time_limit) or libpq's connect_timeout: the failures a starved
# worker can cause by itself.
_TIMEOUTS = (TimeoutError, psycopg.errors.ConnectionTimeout)
# Primary positions remembered per shard: enough for lags well past any sane REPLICA_MAX_LAG.
_HISTORY = 600


@dataclass(frozen=True)
class ShardHealth:
    shard_id: int
    primary_ok: bool = False
    primary_lsn: int | None = None
    replica_reachable: bool = False
    replica_replay_lsn: int | None = None
    replica_lag_seconds: float | None = None
    checked_at: float = 0.0

    @property
    def replica_ok(self) -> bool:
        """Whether reads may go to the replica."""
        if not self.replica_reachable:
            return False
        if self.replica_lag_seconds is None:
            # The primary is down: the replica is the best copy there is.
            return not self.primary_ok
        return self.replica_lag_seconds <= settings.REPLICA_MAX_LAG


def wal_position(cursor) -> int:
    """The primary's WAL position now (a psycopg or Django cursor: after a write, on the
    writer's own connection)."""
    cursor.execute(_PRIMARY_SQL)
    return lsn_to_int(cursor.fetchone()[0])


def replay_position(cursor) -> int:
    """The replica's replayed WAL position now (the health view's may be a probe old)."""
    cursor.execute(_REPLAY_SQL)
    (lsn,) = cursor.fetchone()
    return lsn_to_int(lsn) if lsn else 0


def _describe(reason: object) -> str:
    if isinstance(reason, BaseException):
        detail = str(reason).strip().splitlines()
        return type(reason).__name__ + (f" ({detail[0]})" if detail else "")
    return str(reason or "no answer")


def conninfo(alias: str) -> dict:
    db = settings.DATABASES[alias]
    return {
        "host": db["HOST"],
        "port": db["PORT"] or 5432,
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "connect_timeout": settings.DB_CONNECT_TIMEOUT,
        "autocommit": False,
        "prepare_threshold": None,
        **settings.DB_TCP_OPTIONS,
    }


def _time_limit(seconds: float):
    """A client-side limit under gevent: PgBouncer may hold a client up to its
    query_wait_timeout when a server has just died, longer than a probe may take."""
    if gevent_patched():
        import gevent

        return gevent.Timeout(seconds, TimeoutError)
    return contextlib.nullcontext()


def reset_pool(alias: str) -> None:
    """Replace the alias's connection pool with a fresh one on next use.

    After a restart every idle connection in the pool is dead, and psycopg_pool retries
    failed connects with a growing backoff while callers wait: a fresh pool has neither.
    Django's `close_pool()` closes it and forgets it; a call that meets it while it closes
    gets a connection error and is retried like any other."""
    with contextlib.suppress(Exception):
        connections[alias].close_pool()


class HealthMonitor:
    def __init__(self) -> None:
        self._states: dict[int, ShardHealth] = {}
        self._connections: dict[str, psycopg.Connection] = {}
        self._down: set[str] = set()
        self._history: dict[int, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=_HISTORY)
        )
        self._lock = threading.Lock()
        self._background = False
        self._last_refresh = 0.0
        # When a call on each database last got its answer (a passive check beside probes).
        self._answered: dict[str, float] = {}
        # Aliases a request saw time out, with the probe that will settle them.
        self._suspects: dict[str, object] = {}

    # --- probing ------------------------------------------------------------------------
    def _query(self, alias: str, sql: str) -> tuple:
        conn = self._connections.get(alias)
        limit = settings.DB_PROBE_TIMEOUT
        try:
            with _time_limit(limit):
                if conn is None or conn.closed:
                    conn = psycopg.connect(**{**conninfo(alias), "autocommit": True})
                    self._connections[alias] = conn
                # One statement, one round trip: on a busy worker every round trip waits
                # for a turn of the loop, and a probe of four would time out four times
                # as easily. The statement reads two functions: nothing to bound server-side.
                return conn.execute(sql).fetchone()
        except Exception:
            self._connections.pop(alias, None)
            if conn is not None:
                conn.close()
            raise

    def _mark(self, alias: str, up: bool, reason: object = None) -> None:
        with self._lock:
            was_down = alias in self._down
            if up:
                self._down.discard(alias)
            else:
                self._down.add(alias)
        if up and was_down:
            logger.warning("%s is back up", alias)
            reset_pool(alias)
        elif not up and not was_down:
            logger.warning("%s is down: %s", alias, _describe(reason))

    def _both(self, shard: Shard) -> tuple[tuple | Exception, tuple | Exception]:
        """The primary's and the replica's probe answers (or errors), queried at once under
        gevent: one unreachable database must not delay the other's verdict."""
        queries = ((shard.primary_alias, _PRIMARY_SQL), (shard.replica_alias, _REPLICA_SQL))

        def one(alias: str, sql: str) -> tuple | Exception:
            try:
                return self._query(alias, sql)
            except Exception as exc:  # the verdict is "down", whatever the error
                return exc

        if gevent_patched():
            import gevent

            greenlets = [gevent.spawn(one, alias, sql) for alias, sql in queries]
            gevent.joinall(greenlets)
            primary, replica = (g.value for g in greenlets)
            return primary, replica
        return one(*queries[0]), one(*queries[1])

    def answered(self, alias: str) -> None:
        """A call on this database just got its answer (shards.access, after each call)."""
        self._answered[alias] = time.monotonic()

    def _no_verdict(self, since: float, failures: dict[str, object]) -> bool:
        """Whether probes begun at `since` that failed (`failures`: alias -> error) say
        nothing against their databases: they timed out, and meanwhile either another call
        on the same database got its answer (busy, not down: the probe queued behind the
        traffic in PgBouncer) or this worker's loop ran late (shards.loop_lag: the answer
        may have waited for its turn). A refusal, or any other error from the server, is a
        verdict, however busy the worker."""
        errors = {alias: e for alias, e in failures.items() if isinstance(e, Exception)}
        if not errors or not all(isinstance(e, _TIMEOUTS) for e in errors.values()):
            return False
        if all(self._answered.get(alias, -1.0) >= since for alias in errors):
            logger.info("a probe timed out on a database that answers calls: no verdict")
            return True
        # A probe makes a few round trips (one on its open connection, three or four to
        # open one), each a turn of the loop: one turn late by an eighth of the limit
        # already makes the limit tight.
        if loop_lag.lagged_since(since, settings.DB_PROBE_TIMEOUT / 8):
            logger.info("a probe timed out while this worker's loop ran late: no verdict")
            return True
        return False

    def _probe(self, shard: Shard) -> ShardHealth:
        state = ShardHealth(shard_id=shard.id, checked_at=time.monotonic())
        primary, replica = self._both(shard)
        previous = self._states.get(shard.id)
        failures = {shard.primary_alias: primary, shard.replica_alias: replica}
        if previous is not None and self._no_verdict(state.checked_at, failures):
            return previous
        if not isinstance(primary, Exception):
            state = replace(state, primary_ok=True, primary_lsn=lsn_to_int(primary[0]))
        # _mark logs a change of state
        self._mark(shard.primary_alias, state.primary_ok, primary)
        if isinstance(replica, Exception):
            self._mark(shard.replica_alias, False, replica)
            return state
        in_recovery, replay_lsn = replica
        if not in_recovery or replay_lsn is None:
            logger.error("%s replica is not a streaming standby: not used", shard.name)
            self._mark(shard.replica_alias, False, "not a streaming standby")
            return state
        self._mark(shard.replica_alias, True)
        replay = lsn_to_int(replay_lsn)
        lag = None if state.primary_lsn is None else self._lag(shard.id, state, replay)
        return replace(
            state, replica_reachable=True, replica_replay_lsn=replay, replica_lag_seconds=lag
        )

    def _lag(self, shard_id: int, state: ShardHealth, replay: int) -> float:
        history = self._history[shard_id]
        if not history or history[-1][1] != state.primary_lsn:
            history.append((state.checked_at, state.primary_lsn))
        oldest_unreplayed = next((seen for seen, lsn in history if lsn > replay), None)
        # A position first seen by this very probe is microseconds old: not lag yet.
        if oldest_unreplayed is None or oldest_unreplayed == state.checked_at:
            return 0.0
        return max(0.0, time.monotonic() - oldest_unreplayed)

    def refresh(self) -> dict[int, ShardHealth]:
        """Probe every primary and replica now (in parallel under gevent)."""
        results = scatter(all_shards(), self._probe)
        with self._lock:
            for shard_id, state in results.items():
                if isinstance(state, ShardHealth):
                    self._states[shard_id] = state
            self._last_refresh = time.monotonic()
        return dict(self._states)

    # --- reading --------------------------------------------------------------------------
    def state(self, shard_id: int) -> ShardHealth:
        if not self._background and (
            time.monotonic() - self._last_refresh > settings.REPLICA_CHECK_INTERVAL
        ):
            self.refresh()
        return self._states.get(shard_id) or ShardHealth(shard_id=shard_id)

    def is_up(self, alias: str) -> bool:
        return alias not in self._down

    def probe(self, alias: str) -> bool:
        """Whether the database answers a fresh connection right now (bounded in time). A
        probe that timed out while calls on the database got answers, or while this worker's
        loop ran late, counts as an answer: nothing says the database is down
        (`_no_verdict`)."""
        started = time.monotonic()
        try:
            limit = settings.DB_PROBE_TIMEOUT
            params = {**conninfo(alias), "autocommit": True}
            with _time_limit(limit), psycopg.connect(**params) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception as exc:
            if self._no_verdict(started, {alias: exc}):
                return True
            logger.info("%s: probe failed: %s", alias, _describe(exc))
            return False

    def suspect(self, alias: str) -> None:
        """A call on this database timed out: probe it now, in the background (the request
        that saw the timeout answers at once). No answer marks it down; until the probe
        ends, `answering` is False, so a full pool on it is not reported as overload."""
        with self._lock:
            if alias in self._suspects:
                return  # one probe settles every request that timed out meanwhile
            self._suspects[alias] = True
        if gevent_patched():
            import gevent

            gevent.spawn(self._settle, alias)
        else:
            self._settle(alias)

    def _settle(self, alias: str) -> None:
        try:
            if not self.probe(alias):
                self.report_down(alias, "no answer to a probe after a call timed out")
        finally:
            with self._lock:
                self._suspects.pop(alias, None)

    def answering(self, alias: str) -> bool:
        """Up and not under suspicion: a pool waiting on it is saturated, not stuck."""
        return alias not in self._down and alias not in self._suspects

    def report_down(self, alias: str, reason: object = "a request's call failed") -> None:
        """A request saw this database fail: stop using it until a probe says otherwise,
        so other requests don't wait on it too."""
        shard_id = shard_for_alias(alias).id
        self._mark(alias, False, reason)
        with self._lock:
            state = self._states.get(shard_id) or ShardHealth(shard_id=shard_id)
            if alias.endswith("_replica"):
                self._states[shard_id] = replace(state, replica_reachable=False)
            else:
                self._states[shard_id] = replace(state, primary_ok=False)

    reset_pool = staticmethod(reset_pool)

    def start_background(self) -> None:
        """Refresh forever in a greenlet of this worker (called from gunicorn's hooks)."""
        import gevent

        self._background = True
        loop_lag.start()

        def loop() -> None:
            while True:
                try:
                    self.refresh()
                except Exception:
                    logger.exception("health refresh failed")
                gevent.sleep(settings.REPLICA_CHECK_INTERVAL)

        self.refresh()
        gevent.spawn(loop)


monitor = HealthMonitor()

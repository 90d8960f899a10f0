"""How shard access classifies failures, and the time limits every database call carries."""

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connections, router
from psycopg_pool import PoolTimeout

from shards import access
from shards.access import current_wal_lsn, run_read, run_write
from shards.consistency import positions_of_request
from shards.errors import ServerBusy, ShardUnavailable, WriteOutcomeUnknown
from shards.health import conninfo, monitor
from shards.timeouts import DatabaseTimeout
from shards.topology import all_shards, shard_by_id
from users.models import User

pytestmark = pytest.mark.cluster


def _pool_exhausted():
    try:
        raise PoolTimeout("couldn't get a connection after 10.00 sec")
    except PoolTimeout as exc:
        raise OperationalError(str(exc)) from exc


@pytest.fixture
def pool_full(monkeypatch):
    monkeypatch.setattr(access, "_pool_saturated", lambda alias: True)


def test_waiting_too_long_for_a_pooled_connection_is_busy_not_down(shards_db, pool_full):
    shard = shard_by_id(0)
    with pytest.raises(ServerBusy) as busy:
        run_read(shard, _pool_exhausted)
    assert busy.value.code == "server_busy" and busy.value.shard_names == ["shard-0"]
    # Overload must not mark the databases down: that would fail every other request.
    assert monitor.is_up(shard.primary_alias) and monitor.is_up(shard.replica_alias)


def test_a_full_pool_on_a_database_that_does_not_answer_is_unavailable_not_busy(
    shards_db, pool_full, monkeypatch
):
    shard = shard_by_id(0)
    # A call on it just timed out: its probe has not answered yet.
    monkeypatch.setattr(monitor, "_suspects", {shard.primary_alias: True})
    with pytest.raises(ShardUnavailable) as failed:
        read_primary_only(shard, _pool_exhausted)
    assert failed.value.code == "shard_unavailable"


def test_a_pool_still_growing_was_waiting_for_the_database_not_for_overload(shards_db):
    """A pool below its size waits for a new connection: the database is slow to accept."""
    with pytest.raises(ShardUnavailable) as failed:
        read_primary_only(shard_by_id(0), _pool_exhausted)
    assert failed.value.code == "shard_unavailable"


def read_primary_only(shard, fn):
    return access.read_primary(shard, fn)


def _timed_out(connected: bool):
    def fn():
        error = DatabaseTimeout("the database did not answer")
        error.connected = connected
        raise error

    return fn


def test_a_write_statement_interrupted_by_the_limit_has_an_unknown_outcome(shards_db):
    with pytest.raises(WriteOutcomeUnknown):
        run_write(shard_by_id(0), _timed_out(connected=True), atomic=False)


def test_a_write_that_never_got_a_connection_changed_nothing(shards_db, monkeypatch):
    monkeypatch.setattr(monitor, "_suspects", {"shard_0": True})  # so it is not "busy"
    with pytest.raises(ShardUnavailable) as failed:
        run_write(shard_by_id(0), _timed_out(connected=False), atomic=False)
    assert not isinstance(failed.value, WriteOutcomeUnknown)


def test_a_transaction_interrupted_before_commit_changed_nothing(shards_db):
    with pytest.raises(ShardUnavailable) as failed:
        run_write(shard_by_id(0), _timed_out(connected=True), atomic=True)
    assert not isinstance(failed.value, WriteOutcomeUnknown)


def test_a_timed_out_call_is_not_retried_and_its_database_is_probed(shards_db, monkeypatch):
    calls, suspects = [], []
    monkeypatch.setattr(monitor, "suspect", suspects.append)
    shard = shard_by_id(0)

    def fn():
        alias = router.db_for_read(User, shard=shard)  # where access pinned the call
        calls.append(alias)
        raise DatabaseTimeout(f"{alias} did not answer")

    with pytest.raises(ShardUnavailable):
        access.read_primary(shard, fn)
    assert calls == [shard.primary_alias] and suspects == [shard.primary_alias]


def test_with_the_primary_down_a_token_read_uses_the_replica_position_now(shards_db):
    """Right after a primary dies the replica usually holds the client's last write, while
    the health view still has the position of a probe up to an interval old (item 17)."""
    shard = shard_by_id(0)
    run_write(shard, lambda: None, atomic=False, wal_position=False)
    written = current_wal_lsn(shard.primary_alias)
    from tests.conftest import wait_for_replicas

    wait_for_replicas()
    monitor.refresh()
    state = monitor.state(shard.id)
    # The view is older than the write (as right after it), and the primary is down.
    monitor._states[shard.id] = state.__class__(
        **{**state.__dict__, "replica_replay_lsn": written - 1}
    )
    monitor.report_down(shard.primary_alias)
    try:

        def where() -> str:
            return router.db_for_read(User, shard=shard)  # where access pinned the read

        with positions_of_request({shard.id: written}):
            assert run_read(shard, where) == shard.replica_alias
        # A replica really behind the token is still refused: no stale read.
        with positions_of_request({shard.id: written + 10**12}), pytest.raises(ShardUnavailable):
            run_read(shard, where)
    finally:
        monitor.refresh()


def test_every_database_connection_carries_tcp_limits():
    for alias in ["default", *[s.primary_alias for s in all_shards()]]:
        options = settings.DATABASES[alias]["OPTIONS"]
        assert options["tcp_user_timeout"] == int(settings.DB_TCP_USER_TIMEOUT * 1000)
        assert options["keepalives"] == 1 and options["keepalives_idle"] >= 1
        assert options["connect_timeout"] == settings.DB_CONNECT_TIMEOUT
    assert conninfo("shard_0")["tcp_user_timeout"] == int(settings.DB_TCP_USER_TIMEOUT * 1000)


def test_the_servers_bound_statements_on_both_paths(shards_db):
    """The server's own statement limit: the last layer, behind the API's DB_TIMEOUT."""
    shard = shard_by_id(0)
    for alias in (shard.primary_alias, shard.replica_alias):
        with psycopg.connect(**{**conninfo(alias), "autocommit": True}) as conn:
            limit = conn.execute("SHOW statement_timeout").fetchone()[0]
        assert limit not in ("0", "0ms"), alias
    with connections[shard.primary_alias].cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        assert cursor.fetchone()[0] != "0"


def test_the_default_limits_answer_an_unreachable_shard_within_three_seconds():
    # The slowest read: a replica attempt, then the primary in what is left of DB_TIMEOUT,
    # then the replica again when the primary failed; a write: DB_TIMEOUT.
    assert settings.DB_REPLICA_TIMEOUT < settings.DB_TIMEOUT
    assert settings.DB_TIMEOUT + settings.DB_REPLICA_TIMEOUT <= 3.0
    # A partition is found by the probe after the one that last saw it answer.
    assert settings.REPLICA_CHECK_INTERVAL + settings.DB_PROBE_TIMEOUT <= 2.0


def _lost_protocol():
    """What psycopg raises when a dying connection answers one command with two results."""
    from django.db import InternalError

    try:
        raise psycopg.InternalError("received 2 results from command 'BEGIN'")
    except psycopg.InternalError as cause:
        raise InternalError(str(cause)) from cause


def _once_broken(answer: str):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            _lost_protocol()
        return answer

    return fn


def test_a_broken_protocol_is_a_connection_failure_not_a_500(shards_db):
    # Handled like a dropped connection: a fresh pool, a probe, one more try; a write only
    # when it never reached COMMIT.
    shard = shard_by_id(0)
    assert access.read_primary(shard, _once_broken("read")) == "read"
    assert run_write(shard, _once_broken("written"), atomic=True)[0] == "written"
    with pytest.raises(WriteOutcomeUnknown):  # the statement may have run
        run_write(shard, _once_broken("twice?"), atomic=False)

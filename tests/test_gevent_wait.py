"""psycopg waiting through the gevent hub (shards.gevent_wait), on a real shard database."""

import os
import socket
import time

import gevent
import psycopg
import pytest
from psycopg import waiting

from shards import gevent_wait
from shards.health import conninfo


@pytest.fixture
def hub_wait(monkeypatch, shards_db):
    monkeypatch.setattr(waiting, "wait", gevent_wait.wait)


def _connect() -> psycopg.Connection:
    return psycopg.connect(**{**conninfo("shard_0"), "autocommit": True})


def test_statements_run_and_answer(hub_wait):
    with _connect() as conn:
        assert conn.execute("SELECT %s::int + 1", [41]).fetchone() == (42,)
        rows = conn.execute("SELECT g, repeat('x', 10000) FROM generate_series(1, 200) g")
        assert len(rows.fetchall()) == 200  # many reads for one statement
        with conn.transaction():
            conn.execute("SELECT 1")
        big = "y" * 2_000_000  # more than a socket buffer: the send waits to write too
        assert conn.execute("SELECT length(%s)", [big]).fetchone() == (len(big),)


def test_a_wait_lets_other_greenlets_run(hub_wait):
    # Three statements of 0.3 s each, in three greenlets: together, not one after another.
    connections = [_connect() for _ in range(3)]
    try:
        started = time.monotonic()
        jobs = [gevent.spawn(c.execute, "SELECT pg_sleep(0.3)") for c in connections]
        gevent.joinall(jobs, raise_error=True)
        assert time.monotonic() - started < 0.75
    finally:
        for c in connections:
            c.close()


def test_install_replaces_psycopgs_choice(monkeypatch):
    monkeypatch.setattr(waiting, "wait", waiting.wait)  # restored after the test
    gevent_wait.install()
    assert waiting.wait is gevent_wait.wait


def test_a_wait_longer_than_the_interval_still_answers(hub_wait):
    # psycopg wakes every 0.1 s without data (READY_NONE) and must go on waiting.
    with _connect() as conn:
        assert conn.execute("SELECT pg_sleep(0.35), 7").fetchone()[1] == 7


def _waits_for(wanted: int, seen: list):
    """A generator as psycopg's: it yields what it waits for and records what it is sent;
    it ends after the first ready flags."""
    while True:
        ready = yield wanted
        seen.append(ready)
        if ready:
            return "done"


def test_the_generator_is_sent_what_the_socket_is_ready_for():
    a, b = socket.socketpair()
    with a, b:
        seen = []
        gevent.spawn_later(0.25, b.send, b"x")
        assert gevent_wait.wait(_waits_for(waiting.WAIT_R, seen), a.fileno(), 0.1) == "done"
        # Nothing for 0.25 s: READY_NONE after each 0.1 s interval, then the read.
        assert seen[-1] == waiting.READY_R
        assert seen[:-1] and set(seen[:-1]) == {waiting.READY_NONE}
        assert a.recv(1) == b"x"
        seen = []
        assert gevent_wait.wait(_waits_for(waiting.WAIT_RW, seen), a.fileno(), 0.1) == "done"
        assert seen == [waiting.READY_W]  # writable at once; nothing left to read
        b.send(b"y")
        seen = []
        assert gevent_wait.wait(_waits_for(waiting.WAIT_RW, seen), a.fileno(), 0.1) == "done"
        assert seen == [waiting.READY_RW]


def test_a_timeout_ends_the_wait():
    a, b = socket.socketpair()
    with a, b:
        started = time.monotonic()
        with pytest.raises(psycopg.errors._WaitTimeout):
            gevent_wait.wait(_waits_for(waiting.WAIT_R, []), a.fileno(), 0.1, timeout=0.25)
        assert 0.2 < time.monotonic() - started < 1.0


def test_a_gevent_timeout_interrupts_the_wait_and_leaves_no_watcher():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.15):
            gevent_wait.wait(_waits_for(waiting.WAIT_R, []), a.fileno(), 0.1)
        # The watcher and timer of the interrupted wait are gone: the data that arrives
        # later wakes only the wait that asks for it.
        b.send(b"x")
        seen = []
        assert gevent_wait.wait(_waits_for(waiting.WAIT_R, seen), a.fileno(), 0.1) == "done"
        assert seen == [waiting.READY_R]


def test_a_socket_closed_under_the_wait_is_a_connection_error():
    a, b = socket.socketpair()
    fileno = os.dup(a.fileno())
    a.close()
    b.close()
    os.close(fileno)
    with pytest.raises(psycopg.OperationalError):
        gevent_wait.wait(_waits_for(waiting.WAIT_R, []), fileno, 0.1)

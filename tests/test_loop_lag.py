"""A worker whose event loop runs late must not take its own slowness for a dead database."""

import time

import gevent
import psycopg
import pytest

from shards import health, loop_lag
from shards.health import HealthMonitor


def test_a_loop_that_ran_late_is_seen_and_a_punctual_one_is_not():
    loop_lag.start()
    gevent.sleep(loop_lag.TICK * 3)
    punctual = time.monotonic()
    gevent.sleep(loop_lag.TICK * 3)
    assert not loop_lag.lagged_since(punctual, 0.1)
    starved = time.monotonic()
    time.sleep(0.3)  # not patched: blocks the loop, as a worker busy with other requests does
    assert loop_lag.lagged_since(starved, 0.1), "a wake still overdue counts"
    gevent.sleep(loop_lag.TICK * 2)
    assert loop_lag.lagged_since(starved, 0.1), "and so does a wake that came late"
    later = time.monotonic()
    gevent.sleep(loop_lag.TICK * 3)
    assert not loop_lag.lagged_since(later, 0.1)


@pytest.mark.parametrize(
    ("error", "verdict_withheld"),
    [
        (TimeoutError(), True),
        (psycopg.errors.ConnectionTimeout("connection timeout expired"), True),
        (psycopg.OperationalError("connection refused"), False),
    ],
)
def test_only_a_timeout_on_a_starved_worker_withholds_the_verdict(
    monkeypatch, error, verdict_withheld
):
    monitor = HealthMonitor()
    monkeypatch.setattr(loop_lag, "lagged_since", lambda since, threshold: True)
    assert monitor._no_verdict(0.0, {"shard_0": error}) is verdict_withheld
    monkeypatch.setattr(loop_lag, "lagged_since", lambda since, threshold: False)
    assert monitor._no_verdict(0.0, {"shard_0": error}) is False


def test_a_probe_that_timed_out_while_calls_on_its_database_got_answers_gives_no_verdict(
    monkeypatch,
):
    monitor = HealthMonitor()
    monkeypatch.setattr(loop_lag, "lagged_since", lambda since, threshold: False)
    started = time.monotonic()
    assert monitor._no_verdict(started, {"shard_0": TimeoutError()}) is False
    monitor.answered("shard_0")
    assert monitor._no_verdict(started, {"shard_0": TimeoutError()}) is True
    assert monitor._no_verdict(started, {"shard_1": TimeoutError()}) is False
    refused = psycopg.OperationalError("connection refused")
    assert monitor._no_verdict(started, {"shard_0": refused}) is False


def test_a_refused_probe_is_down_however_late_the_loop(monkeypatch):
    monitor = HealthMonitor()
    monkeypatch.setattr(loop_lag, "lagged_since", lambda since, threshold: True)
    closed = {**health.conninfo("default"), "host": "127.0.0.1", "port": 1}
    monkeypatch.setattr(health, "conninfo", lambda alias: closed)
    assert monitor.probe("default") is False

"""How late this worker's event loop has been running: whether a timeout measured the
database or only a starved process.

Under gevent, a probe's time limit is a timer on the worker's loop, and the probe's answer is
read by the same loop. When thousands of connections keep the worker's CPU busy, a ready
answer can wait longer than the limit for its turn: the timer fires and a healthy database
would be marked down, failing every request of the worker for a probe interval. A greenlet
that asks to wake every TICK seconds measures how late it wakes; a timeout during which the
loop ran late by more than a threshold (shards.health: an eighth of the probe's limit) is no
evidence against the database.
"""

import collections
import time

TICK = 0.05
_lates: collections.deque = collections.deque(maxlen=400)  # (woke at, seconds late)
_last_wake = 0.0
_running = False


def _watch() -> None:
    import gevent

    global _last_wake
    while True:
        asleep = time.monotonic()
        gevent.sleep(TICK)
        _last_wake = time.monotonic()
        _lates.append((_last_wake, _last_wake - asleep - TICK))


def start() -> None:
    """Start measuring (once per worker, under gevent)."""
    global _running, _last_wake
    if _running:
        return
    import gevent

    _running = True
    _last_wake = time.monotonic()
    gevent.spawn(_watch)


def lagged_since(since: float, threshold: float) -> bool:
    """Whether the loop woke more than `threshold` seconds late at any time since `since`
    (monotonic), counting a wake still overdue now. False when not measuring."""
    if not _running:
        return False
    if time.monotonic() - _last_wake > TICK + threshold:
        return True
    return any(late > threshold for woke, late in reversed(_lates) if woke >= since)

"""psycopg's wait function for gevent workers: one event-loop watcher per wait.

psycopg chooses how to wait for its socket when it is imported; under gevent's patched
`select` it takes `wait_poll`, which builds a gevent `select.poll` for every wait (a result
object, an event, a watcher and a timeout): 5.5 % of a GET's CPU and 15.5 % of a list
page's, with the generator work it drives (bench/profile.py get_ours list_ours). `wait`
here keeps `wait_poll`'s contract and waits on the hub directly, with an io watcher and a
timer as gevent's own sockets do. Written here because no library does it for psycopg 3
(psycogreen patches psycopg2 only).
"""

import os
from time import monotonic
from typing import Any

from gevent import get_hub
from gevent.hub import Waiter
from psycopg import errors, waiting

# psycopg's Wait and Ready flags are libev's: read 1, write 2.
_READ_WRITE = 3


def install() -> None:
    """Make psycopg wait through the gevent hub (call after gevent has patched the process).
    Every `Connection.wait` reads `psycopg.waiting.wait` when it runs."""
    waiting.wait = wait


def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
    """Drive `gen` (a psycopg generator) to its end: send it the ready flags of `fileno`
    when it would block, or READY_NONE after `interval` seconds without any; raise
    `_WaitTimeout` past `timeout` seconds. Returns what `gen` returns."""
    if interval is None:
        raise ValueError("indefinite wait not supported")
    deadline = None if timeout is None else monotonic() + timeout
    loop = get_hub().loop
    try:
        wanted = next(gen)
        while True:
            seconds = interval if deadline is None else min(interval, deadline - monotonic())
            ready = _ready(loop, fileno, wanted, max(seconds, 0.0))
            if not ready:
                _check_open(fileno)
            wanted = gen.send(ready)
            # After the generator has seen what arrived, as wait_poll does: data already
            # there is processed, and a timeout of 0 polls once.
            if deadline is not None and monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except StopIteration as stop:
        return stop.value


def _ready(loop: Any, fileno: int, wanted: int, seconds: float) -> int:
    """The flags of `wanted` that `fileno` is ready for, or 0 after `seconds`."""
    try:
        watcher = loop.io(fileno, wanted)
    except OSError as exc:  # gevent refuses a closed descriptor (EBADF)
        raise errors.OperationalError("connection socket closed") from exc
    waiter = Waiter()
    timer = loop.timer(seconds)
    watcher.start(waiter.switch, pass_events=True)
    timer.start(waiter.switch, 0)
    try:
        events = waiter.get()
    finally:
        # Stopping also drops a callback already pending in this loop iteration, so the
        # one that did not fire cannot resume this greenlet later.
        watcher.stop()
        timer.stop()
        watcher.close()
        timer.close()
    ready = events & _READ_WRITE
    # An error on the socket without a read or write flag: let libpq find out what it is.
    return ready or (wanted if events else 0)


def _check_open(fileno: int) -> None:
    """A socket closed under the wait has no events: report it as psycopg does."""
    try:
        os.fstat(fileno)
    except OSError as exc:
        raise errors.OperationalError("connection socket closed") from exc

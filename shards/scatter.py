"""Run one function on many shards at once and collect each shard's answer or error.

Under gunicorn's gevent worker the calls run in parallel greenlets; elsewhere (tests,
management commands) they run one after another with the same results. The greenlets are
runners kept between calls (see _serve). Each has its own Django connections (Django keeps
them per greenlet), handed back to the pool after every call (shards.release).
"""

import contextvars
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

from shards.release import release_connections
from shards.topology import Shard

T = TypeVar("T")


def gevent_patched() -> bool:
    """Whether gevent has patched this process (gunicorn's gevent worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def _call(fn: Callable[[Shard], T], shard: Shard) -> T | BaseException:
    try:
        return fn(shard)
    except Exception as exc:  # the caller decides what a failed shard means
        return exc


def _call_in_greenlet(fn: Callable[[Shard], T], shard: Shard) -> T | BaseException:
    try:
        return _call(fn, shard)
    finally:
        release_connections()


# Greenlets kept between calls, waiting for work: Django keeps connection wrappers per greenlet,
# and building five anew in five fresh greenlets cost ~10 % of a list page's CPU. A runner
# holds no database connection while idle (each call hands its own back); past _MAX_IDLE
# idle runners, a finished one ends instead of waiting.
_idle: list = []
_MAX_IDLE = 256


def _serve(inbox) -> None:
    while True:
        context, fn, shard, result = inbox.get()
        try:
            # The caller's context (a copy): the request's consistency token and pins reach
            # the router here.
            result.set(context.run(_call_in_greenlet, fn, shard))
        except BaseException as exc:  # killed: the caller still gets an answer
            result.set_exception(exc)
            raise
        if len(_idle) >= _MAX_IDLE:
            return
        _idle.append(inbox)


def _submit(fn: Callable[[Shard], T], shard: Shard):
    import gevent
    from gevent.event import AsyncResult
    from gevent.queue import SimpleQueue

    if _idle:
        inbox = _idle.pop()
    else:
        inbox = SimpleQueue()
        gevent.spawn(_serve, inbox)
    result = AsyncResult()
    inbox.put((contextvars.copy_context(), fn, shard, result))
    return result


def scatter(shards: Iterable[Shard], fn: Callable[[Shard], T]) -> dict[int, T | BaseException]:
    """{shard id: fn(shard) or the exception it raised}."""
    shards = list(shards)
    if len(shards) > 1 and gevent_patched():
        import gevent

        results = [_submit(fn, shard) for shard in shards]
        gevent.wait(results)
        return {
            shard.id: result.value if result.successful() else result.exception
            for shard, result in zip(shards, results, strict=True)
        }
    return {shard.id: _call(fn, shard) for shard in shards}

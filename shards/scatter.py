"""Run one function on many shards at once and collect each shard's answer or error.

Under gunicorn's gevent worker the calls run in parallel greenlets; elsewhere (tests,
management commands) they run one after another with the same results. Each greenlet has
its own Django connections (greenlets have their own context), so they are handed back to
the pool when the greenlet ends (shards.release) instead of leaking until garbage
collection.
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


def scatter(shards: Iterable[Shard], fn: Callable[[Shard], T]) -> dict[int, T | BaseException]:
    """{shard id: fn(shard) or the exception it raised}."""
    shards = list(shards)
    if len(shards) > 1 and gevent_patched():
        import gevent

        # A new greenlet starts with an empty context: each gets a copy of the caller's, so
        # the request's consistency token reaches the router in every greenlet.
        greenlets = [
            gevent.spawn(contextvars.copy_context().run, _call_in_greenlet, fn, shard)
            for shard in shards
        ]
        gevent.joinall(greenlets)
        return {shard.id: g.value for shard, g in zip(shards, greenlets, strict=True)}
    return {shard.id: _call(fn, shard) for shard in shards}

"""Hand a request's database connections back to the pool when it ends, checking only those.

Django's request handlers walk every database alias and every cache alias through asgiref's
`Local` (`close_old_connections`, `close_caches`, `reset_queries`): with 11 database aliases
that is about 50 µs of a 750 µs GET (`bench/profile.py get_ours`), nearly all of it spent
asking about aliases the request never used. A request's connections are known as they
open (`connection_created` is sent each time a pooled connection is lent), so at the end
only those get Django's own `close_if_unusable_or_obsolete`, which with pooling hands them
back (messenger.wsgi puts this in place of Django's handlers).

The greenlets a request fans out to (shards.scatter) run in a copy of its context: they see
the request's list, and each gives back the connections it opened itself (a Django
connection belongs to the greenlet that opened it). Where `start_tracking` was not called
(tests, management commands) nothing is tracked, and `release_connections` falls back to
Django's walk of every alias.
"""

from contextvars import ContextVar
from threading import get_ident

from django.db import close_old_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

# (greenlet or thread id, connection) of every connection opened and not yet handed back,
# in the request's context; None until the first one opens there.
_opened: ContextVar[list | None] = ContextVar("opened_connections", default=None)
_tracking = False


def _remember(sender: type, connection: BaseDatabaseWrapper, **kwargs) -> None:
    if not _tracking:
        return
    opened = _opened.get()
    if opened is None:
        opened = []
        _opened.set(opened)
    opened.append((get_ident(), connection))


def release_connections(**kwargs) -> None:
    """Give back (or close, if unusable) the connections this greenlet opened."""
    opened = _opened.get()
    if opened is None:
        if not _tracking:
            close_old_connections()  # Django's own walk of every alias
        return
    me = get_ident()
    mine = [connection for owner, connection in opened if owner == me]
    opened[:] = [entry for entry in opened if entry[0] != me]
    for connection in mine:
        connection.close_if_unusable_or_obsolete()


def start_tracking() -> None:
    """Remember the connections each request opens from now on (gunicorn's workers, which
    then call `release_connections` at `request_finished`: messenger.wsgi)."""
    global _tracking
    _tracking = True


connection_created.connect(_remember)

"""Serve a few requests inside a new worker before it takes connections.

A fresh worker spends ~200 ms on its first request (URL resolver, DRF, serializers, the
first connection of each pool): during a restart every client moves to the new workers
at once, and those first requests would stall them all. Called from post_worker_init,
before the worker reports ready. The requests write nothing (reads, a 400 on an empty
create); they go straight to the WSGI application, never through the socket."""

import io
import logging
import uuid
from collections.abc import Callable
from wsgiref.util import setup_testing_defaults

REQUESTS = [
    ("GET", "/health", b""),
    ("GET", "/api/v1/users/?limit=1", b""),  # every shard's replica
    ("GET", f"/api/v1/users/{uuid.uuid4()}", b""),
    ("GET", f"/api/v1/users/{uuid.uuid4()}", b""),
    ("POST", "/api/v1/users/", b"{}"),  # the create path up to validation: a 400
]


def _open_pools() -> None:
    """One pooled connection per database that is up, opened in parallel (greenlets)."""
    import gevent
    from django.db import connections

    from shards.health import monitor

    def open_one(alias: str) -> None:
        connection = connections[alias]
        try:
            connection.ensure_connection()
        finally:
            connection.close()  # back to the pool, open

    aliases = [alias for alias in connections if alias == "default" or monitor.is_up(alias)]
    gevent.joinall([gevent.spawn(open_one, alias) for alias in aliases], timeout=3)


def warm_up(application: Callable, log: logging.Logger | logging.LoggerAdapter) -> None:
    # The 404s and the 400 are expected: not worth a warning line per worker boot.
    request_log = logging.getLogger("django.request")
    level = request_log.level
    request_log.setLevel(logging.ERROR)
    try:
        _open_pools()
        for method, path, body in REQUESTS:
            path_info, _, query = path.partition("?")
            environ = {
                "REQUEST_METHOD": method,
                "PATH_INFO": path_info,
                "QUERY_STRING": query,
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_REQUEST_ID": "warm-up",
                "wsgi.input": io.BytesIO(body),
            }
            setup_testing_defaults(environ)
            try:
                for _ in application(environ, lambda status, headers, exc_info=None: None):
                    pass
            except Exception:
                log.warning("warm-up request %s %s failed", method, path, exc_info=True)
    finally:
        request_log.setLevel(level)

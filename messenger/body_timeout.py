"""Bound in time the reading of a request body.

A client that announces more bytes (Content-Length) than it sends would otherwise hold its
request, a greenlet and a connection forever: nothing else bounds a read under gevent's
workers (gunicorn's `timeout` only watches the worker's heartbeat). The body is read here,
eagerly and at most MAX_BODY_BYTES of it (BodySizeLimitMiddleware, before this one, has
refused larger ones), then parsed from memory by DRF as usual."""

import contextlib
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from messenger.errors import error_response
from shards.scatter import gevent_patched

# Set in the WSGI environ when the body did not arrive in time: gunicorn's post_request
# hook (messenger.drain) then closes the connection instead of waiting for the rest.
TIMED_OUT = "messenger.body_timed_out"


class BodyTimeout(Exception):
    """Not an OSError: Django turns those, raised while reading, into UnreadablePostError."""


def _time_limit(seconds: float):
    if gevent_patched():
        import gevent

        return gevent.Timeout(seconds, BodyTimeout)
    return contextlib.nullcontext()  # tests' Django client: the body is already in memory


class BodyReadTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.seconds = settings.REQUEST_BODY_TIMEOUT

    def __call__(self, request: HttpRequest) -> HttpResponse:
        has_body = request.META.get("CONTENT_LENGTH") not in (None, "", "0") or (
            "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        )
        if has_body:
            try:
                with _time_limit(self.seconds):
                    request.body  # noqa: B018 - read now, cached for the parsers
            except BodyTimeout:
                request.META[TIMED_OUT] = True
                return error_response(
                    408, f"request body not received within {self.seconds:g} s", "request_timeout"
                )
        return self.get_response(request)

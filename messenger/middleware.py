"""Middleware of the messenger project."""

import collections
import threading
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from messenger.errors import error_response
from shards.consistency import TOKEN_HEADER, InvalidToken, decode_token, positions_of_request

# Only the admin needs sessions, CSRF protection, authentication and messages (its views also
# protect their forms with csrf_protect; the middleware covers every page under /admin/).
ADMIN_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


class ContentLengthMiddleware:
    """Content-Length on every answer with a body in memory, as Django's CommonMiddleware
    sets it (without that middleware's URL rewriting). Without it gunicorn frames the
    answer in chunks: an extra write per response and a parser on the client for what is a
    few hundred bytes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # 1xx, 204 and 304 answers carry no body and must not announce one (RFC 9110, 8.6).
        if (
            not response.streaming
            and response.status_code not in (204, 304)
            and response.status_code >= 200
            and "Content-Length" not in response
        ):
            response["Content-Length"] = str(len(response.content))
        return response


class AdminOnlyMiddleware:
    """Run the session, CSRF, auth and messages middleware for /admin/ only, so the API path
    pays for none of them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        admin_handler = get_response
        for path in reversed(ADMIN_MIDDLEWARE):
            admin_handler = import_string(path)(admin_handler)
        self.admin_handler = admin_handler

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/admin/"):
            return self.admin_handler(request)
        return self.get_response(request)


class BodySizeLimitMiddleware:
    """Answer 413 to a body larger than MAX_BODY_BYTES before anything reads it, and 411 to a
    chunked body.

    DRF parses JSON from the raw stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE alone
    would not stop a large JSON body. Django reads a body by CONTENT_LENGTH only, so a
    chunked body would look empty and earn a misleading "field required": the client is
    told to send a length instead (every JSON client can)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return error_response(
                411,
                "chunked request bodies are not accepted: send Content-Length",
                "length_required",
            )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "invalid Content-Length header", "bad_request")
        if length > self.limit:
            return error_response(
                413, f"request body larger than {self.limit} bytes", "request_too_large"
            )
        return self.get_response(request)


class ConsistencyTokenMiddleware:
    """Decode `X-Consistency-Token` before any view runs, so a request with an invalid token
    is a 400 that changed nothing, and make its positions the request's (the router reads
    them to decide whether a replica may answer)."""

    META_KEY = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = request.META.get(self.META_KEY)
        if not token:
            return self.get_response(request)  # no constraint: request_positions() is {}
        try:
            positions = decode_token(token)
        except InvalidToken as exc:
            return error_response(
                400, "invalid input", "validation_error", {TOKEN_HEADER: [str(exc)]}
            )
        with positions_of_request(positions):
            return self.get_response(request)


class Turns:
    """At most `size` holders at once; the others wait in arrival order.

    Hand-written because gevent's and threading's semaphores let a newcomer take a freed
    slot before the waiter it was meant for wakes up: under a steady stream of requests the
    oldest waiters can starve until their clients give up (measured: p99 8 s and timeouts at
    256 connections). Here a freed turn passes straight to the longest waiter."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: collections.deque = collections.deque()
        self._lock = threading.Lock()  # gevent's (compiled) once gevent patched threading

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed a turn as the wait ended
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the turn passes on: still taken
            else:
                self._free += 1


class ConcurrencyLimitMiddleware:
    """At most MAX_CONCURRENT_REQUESTS requests of this worker run at once; the others wait
    for their turn here, up to REQUEST_QUEUE_TIMEOUT, then get 503 `server_busy`.

    A gevent worker takes thousands of connections and would run all their requests at once.
    Past what its CPU and its pools serve, they only slow each other down: each database
    call waits for a pooled connection and for its turn on the loop, runs out of
    DB_TIMEOUT, and healthy shards answer 503 `shard_unavailable` (measured: thousands of
    them in 10 s at 2,000 connections). Waiting before the first database call keeps those
    limits about the databases. Health endpoints never wait: probes must see the worker."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Built in each worker, after gevent patched threading (no preload).
        self.slots = Turns(settings.MAX_CONCURRENT_REQUESTS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/health"):
            return self.get_response(request)
        if not self.slots.acquire(timeout=settings.REQUEST_QUEUE_TIMEOUT):
            response = error_response(503, "server busy: retry shortly", "server_busy")
            response["Retry-After"] = "1"
            return response
        try:
            return self.get_response(request)
        finally:
            self.slots.release()

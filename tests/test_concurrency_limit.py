"""A worker runs at most MAX_CONCURRENT_REQUESTS requests at once; the rest wait their turn."""

import json
import threading
import time

from django.http import HttpResponse
from django.test import RequestFactory

from messenger.middleware import ConcurrencyLimitMiddleware


def _limited(settings, release: threading.Event, entered: threading.Event):
    settings.MAX_CONCURRENT_REQUESTS = 1
    settings.REQUEST_QUEUE_TIMEOUT = 0.3

    def view(request):
        if request.path == "/api/v1/users/slow":
            entered.set()
            release.wait(5)
        return HttpResponse("ok")

    return ConcurrencyLimitMiddleware(view)


def test_a_request_past_the_limit_waits_its_turn_then_gets_server_busy(settings):
    release, entered = threading.Event(), threading.Event()
    middleware = _limited(settings, release, entered)
    factory = RequestFactory()
    holder = threading.Thread(target=middleware, args=[factory.get("/api/v1/users/slow")])
    holder.start()
    assert entered.wait(5)

    started = time.monotonic()
    busy = middleware(factory.get("/api/v1/users/"))
    waited = time.monotonic() - started
    assert busy.status_code == 503
    assert json.loads(busy.content)["code"] == "server_busy"
    assert busy["Retry-After"] == "1"
    assert waited >= 0.3

    health = middleware(factory.get("/health/ready"))  # probes never wait
    assert health.status_code == 200

    release.set()
    holder.join(5)
    assert middleware(factory.get("/api/v1/users/")).status_code == 200


def test_a_waiting_request_runs_as_soon_as_a_turn_frees(settings):
    release, entered = threading.Event(), threading.Event()
    middleware = _limited(settings, release, entered)
    settings.REQUEST_QUEUE_TIMEOUT = 5
    middleware = ConcurrencyLimitMiddleware(middleware.get_response)
    factory = RequestFactory()
    holder = threading.Thread(target=middleware, args=[factory.get("/api/v1/users/slow")])
    holder.start()
    assert entered.wait(5)
    threading.Timer(0.2, release.set).start()
    assert middleware(factory.get("/api/v1/users/")).status_code == 200
    holder.join(5)

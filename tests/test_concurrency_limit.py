"""A worker runs at most MAX_CONCURRENT_REQUESTS requests at once; the rest wait their turn."""

import json
import threading
import time

from django.http import HttpResponse
from django.test import RequestFactory

from messenger.middleware import ConcurrencyLimitMiddleware, Turns


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


def test_a_freed_turn_goes_to_the_longest_waiter_never_to_a_newcomer():
    turns = Turns(1)
    assert turns.acquire(1)
    order: list[str] = []

    def wait(name: str) -> None:
        assert turns.acquire(5)
        order.append(name)
        time.sleep(0.05)
        turns.release()

    first = threading.Thread(target=wait, args=["first"])
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=wait, args=["second"])
    second.start()
    time.sleep(0.1)
    turns.release()
    assert turns.acquire(5)  # arrives as the turn is freed: queues behind both
    order.append("newcomer")
    first.join(5)
    second.join(5)
    assert order == ["first", "second", "newcomer"]


def test_a_waiter_that_gave_up_is_not_handed_a_turn_later():
    turns = Turns(1)
    assert turns.acquire(1)
    assert not turns.acquire(0.05)
    turns.release()
    assert turns.acquire(0.05)  # the freed turn was not passed to the waiter that left

"""gunicorn's gevent worker with batched accepts (messenger.gevent_worker)."""

import runpy
from pathlib import Path

from gevent.server import StreamServer
from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.util import load_class
from gunicorn.workers import ggevent

from messenger.gevent_worker import BatchAcceptServer, GeventWorker
from messenger.one_write_response import OneWriteResponse

CONFIG = Path(__file__).resolve().parent.parent / "messenger" / "gunicorn.conf.py"


def test_gunicorns_one_accept_per_turn_does_not_lower_the_batch():
    server = BatchAcceptServer(("127.0.0.1", 0), handle=lambda sock, address: None)
    try:
        server.max_accept = 1  # what gunicorn's worker sets when it runs several workers
        assert server.max_accept == StreamServer.max_accept > 1
    finally:
        server.close()


def test_the_served_app_runs_this_worker():
    config = runpy.run_path(str(CONFIG))
    assert load_class(config["worker_class"]) is GeventWorker
    assert issubclass(GeventWorker, ggevent.GeventWorker)


def test_the_worker_builds_its_servers_from_the_batching_class(monkeypatch):
    built = []

    def stop_after_servers(self):
        built.append(ggevent.StreamServer)

    monkeypatch.setattr(ggevent, "StreamServer", StreamServer)
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # run() installs the one-write writer
    monkeypatch.setattr(util, "http_date", util.http_date)
    monkeypatch.setattr(ggevent.GeventWorker, "run", stop_after_servers)
    GeventWorker.run(object.__new__(GeventWorker))
    assert built == [BatchAcceptServer]
    assert wsgi.Response is OneWriteResponse

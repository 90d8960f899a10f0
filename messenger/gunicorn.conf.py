"""gunicorn settings: gevent workers, thousands of connections each, no preload.

No preload: psycopg must be imported after gevent has patched the worker, or it keeps its
blocking C wait function and one slow query stalls every request of the worker.

Logs: capture_output points a daemon's stdout and stderr at its error log file, so the
application's records (Django's LOGGING writes to stderr) and any traceback land in the
file `make logs` follows. Restart and stop: see messenger.lifecycle."""

import multiprocessing
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the `gunicorn` script puts only its own directory there
    sys.path.insert(0, str(ROOT))

from messenger import lifecycle  # noqa: E402
from messenger.log_config import ACCESS_FORMAT, log_format, logging_config  # noqa: E402

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "messenger.gevent_worker.GeventWorker"  # gunicorn's, accepting in batches
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
backlog = int(os.environ.get("BACKLOG", "4096"))
keepalive = int(os.environ.get("KEEPALIVE", "75"))
timeout = int(os.environ.get("WORKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
preload_app = False
accesslog = os.environ.get("ACCESS_LOG") or None
access_log_format = ACCESS_FORMAT
errorlog = "-"
capture_output = True
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Text: gunicorn's own formats and handlers. JSON: every logger, gunicorn's included.
logconfig_dict = logging_config() if log_format() == "json" else {}
wsgi_app = "messenger.wsgi:application"

when_ready = lifecycle.when_ready
pre_exec = lifecycle.pre_exec
on_exit = lifecycle.on_exit


def on_starting(server) -> None:
    # Each client connection is a file descriptor: 10,000 users need more than 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lifecycle.on_starting(server)


def post_worker_init(worker) -> None:
    import psycopg.waiting

    if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None):
        worker.log.critical("psycopg uses its blocking C wait function under gevent: abort")
        sys.exit(4)
    if "PSYCOPG_WAIT_FUNC" not in os.environ:  # psycopg's own choice, for a trial
        from shards import gevent_wait

        gevent_wait.install()
    from django.core.exceptions import ImproperlyConfigured

    from shards import slot_map

    try:
        slot_map.refresh()
    except ImproperlyConfigured as exc:
        # The map in the control database gives slots to a shard this server has no
        # address for: serving would answer its users 404. Refuse to start.
        worker.log.critical("refusing to start: %s", exc)
        sys.exit(4)
    from resharding import identity

    wrong = identity.problems()
    if wrong:
        # Serving would read and write another shard's rows under this shard's name.
        worker.log.critical("refusing to start: %s", "; ".join(wrong))
        sys.exit(4)
    from shards.health import monitor

    monitor.start_background()  # the first health refresh runs before the worker accepts
    from messenger.warmup import warm_up

    warm_up(worker.wsgi, worker.log)
    lifecycle.worker_ready(worker)


def post_request(worker, req, environ, resp) -> None:
    from messenger.drain import drain_unread_body

    drain_unread_body(req, environ)

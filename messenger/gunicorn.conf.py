"""gunicorn settings: gevent workers, thousands of connections each, no preload.

No preload: psycopg must be imported after gevent has patched the worker, or it keeps its
blocking C wait function and one slow query stalls every request of the worker."""

import multiprocessing
import os
import resource
import sys

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
backlog = int(os.environ.get("BACKLOG", "4096"))
keepalive = int(os.environ.get("KEEPALIVE", "75"))
timeout = int(os.environ.get("WORKER_TIMEOUT", "30"))
graceful_timeout = 10
preload_app = False
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
wsgi_app = "messenger.wsgi:application"


def on_starting(server) -> None:
    # Each client connection is a file descriptor: 10,000 users need more than 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def post_worker_init(worker) -> None:
    import psycopg.waiting

    if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None):
        worker.log.critical("psycopg uses its blocking C wait function under gevent: abort")
        sys.exit(4)
    from shards.health import monitor

    monitor.start_background()

"""Bench settings plus the proposed changes selected by environment variables.

EXP_URLS=plain   GET by id and POST as plain Django views (bench.experiments.urls)
EXP_URLS=noauth  our DRF views without DRF's lazy authentication step
EXP_SIGNALS=1    no request_started handlers (close_old_connections, reset_queries)
EXP_TZ=1         psycopg's C timestamptz loader instead of Django's Python one
"""

import os

from bench.settings import *  # noqa: F403

if os.environ.get("EXP_SIGNALS"):
    # Connections are per greenlet and handed back to the pool at request_finished, so
    # nothing is open when a request starts: the request_started handlers find nothing.
    from django import db
    from django.core import signals

    signals.request_started.disconnect(db.reset_queries)
    signals.request_started.disconnect(db.close_old_connections)

if os.environ.get("EXP_TZ"):
    # The server runs in UTC, so psycopg's C loader already yields UTC datetimes; Django
    # registers a Python subclass (to set its tzinfo), which parses every value in Python.
    from django.db.backends.postgresql import base
    from psycopg.types.datetime import TimestamptzLoader

    _create_cursor = base.DatabaseWrapper.create_cursor

    def create_cursor(self, name=None):
        cursor = _create_cursor(self, name)
        # AdaptersMap swaps in the C implementation of the class when there is one.
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        return cursor

    base.DatabaseWrapper.create_cursor = create_cursor

if os.environ.get("EXP_URLS"):
    ROOT_URLCONF = "bench.experiments.urls"

"""WSGI entry point (gunicorn: messenger.wsgi:application)."""

import os

from django import db
from django.core import signals
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")

application = get_wsgi_application()

# Under gevent every request runs in a new greenlet with no database connections of its own
# (they are handed back to the pool at request_finished), so the request_started handlers,
# which walk all 11 aliases, never find anything to do: ~9 % of a GET's CPU, measured.
signals.request_started.disconnect(db.reset_queries)
signals.request_started.disconnect(db.close_old_connections)

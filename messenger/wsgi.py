"""WSGI entry point (gunicorn: messenger.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")

application = get_wsgi_application()

# Django's request signal handlers walk every database and cache alias, and reset the URLconf,
# through asgiref's Local: ~100 µs of a 750 µs GET (bench/profile.py get_ours), nearly all of
# it for nothing here. Under gevent a request's connections belong to its greenlet:
# shards.release hands back the ones it opened. The cache backends configured (local memory,
# dummy, Redis) have a no-op close(). No middleware sets request.urlconf, and Django sets
# ROOT_URLCONF again at the start of every request.
from django import db  # noqa: E402 - Django is set up by the lines above
from django.core import signals  # noqa: E402
from django.core.cache import close_caches  # noqa: E402
from django.core.handlers.base import reset_urlconf  # noqa: E402

from shards import release  # noqa: E402

signals.request_started.disconnect(db.reset_queries)
signals.request_started.disconnect(db.close_old_connections)
signals.request_finished.disconnect(db.close_old_connections)
signals.request_finished.disconnect(close_caches)
signals.request_finished.disconnect(reset_urlconf)
release.start_tracking()
signals.request_finished.connect(release.release_connections)

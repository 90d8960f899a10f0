"""WSGI entry point (gunicorn: messenger.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")

application = get_wsgi_application()

from shards import release  # noqa: E402 - Django is set up by the line above

release.install()

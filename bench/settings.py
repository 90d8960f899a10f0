"""Settings of the benchmark server: the product's settings plus bench-only routes."""

from messenger.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

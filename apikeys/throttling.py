"""Per-key rate limit (API_KEY_RATE) with DRF's throttling, its counts in Redis (REDIS_URL),
so that every API process of a deployment counts the same requests."""

import functools
import logging

from django.conf import settings
from django.core.cache import BaseCache, caches
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from apikeys.verify import KeyHolder

logger = logging.getLogger(__name__)


@functools.cache
def counts() -> BaseCache:
    """One Redis client (and connection pool) per process: under gevent `caches[...]` makes
    one per greenlet, that is per request."""
    return caches.create_connection("throttle")


class ApiKeyRateThrottle(SimpleRateThrottle):
    """At most API_KEY_RATE requests per key (`100/s`, `6000/min`, `N/hour`, `N/day`);
    requests without a key, and every request when API_KEY_RATE is unset, are not counted.
    `request`: DRF's Request, or any object carrying the key holder as `auth` (the views
    outside DRF)."""

    scope = "api_key"

    def __init__(self) -> None:
        self.cache = counts()
        super().__init__()

    def get_rate(self) -> str | None:
        return settings.API_KEY_RATE or None

    def get_cache_key(self, request: Request, view: object) -> str | None:
        holder = getattr(request, "auth", None)
        if not isinstance(holder, KeyHolder):
            return None
        return self.cache_format % {"scope": self.scope, "ident": holder.prefix}

    def allow_request(self, request: Request, view: object) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            # A limiter that cannot count lets requests through rather than failing them.
            logger.warning("rate limit not applied, Redis did not answer: %s", exc)
            return True

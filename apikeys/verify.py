"""The API key check that DRF's authentication class and the plain views share.

A verdict (the key's holder, or "no such key") is cached in this process for
API_KEY_CACHE_TTL seconds, keyed by the key's SHA-256: a request with a key seen lately
costs no database round trip, and a revoked key stops working within that time."""

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DatabaseError
from rest_framework import exceptions

from apikeys.keys import hash_key
from apikeys.models import ApiKey
from shards.timeouts import time_limit

WWW_AUTHENTICATE = 'Bearer realm="api"'
MISSING = "an API key is required: send `Authorization: Bearer <key>`"
INVALID = "invalid or revoked API key"
_NO_KEY = "-"  # the cached verdict for a hash that names no usable key


@dataclass(frozen=True)
class KeyHolder:
    """Who sent a valid key: DRF's `request.user` (and `request.auth`) for the request."""

    key_id: int
    name: str
    prefix: str

    is_authenticated = True


class AuthUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "API keys cannot be checked now: the control database did not answer"
    default_code = "auth_unavailable"


@functools.cache
def verdicts() -> BaseCache:
    """This process's cache of verdicts. One object per process: under gevent `caches[...]`
    makes one per greenlet, that is per request."""
    return caches.create_connection("api_keys")


def auth_required() -> bool:
    return settings.API_AUTH == "required"


def _lookup(digest: str) -> KeyHolder | None:
    try:
        with time_limit("default", settings.DB_TIMEOUT):
            row = (
                ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True)
                .values_list("id", "name", "prefix")
                .first()
            )
    except DatabaseError as exc:
        raise AuthUnavailable() from exc
    return KeyHolder(*row) if row else None


def holder_of(key: str) -> KeyHolder | None:
    """The holder of a valid, unrevoked key, as this process saw it at most
    API_KEY_CACHE_TTL seconds ago; None for any other key."""
    cache = verdicts()
    digest = hash_key(key)
    verdict = cache.get(digest)
    if verdict is None:
        verdict = _lookup(digest) or _NO_KEY
        cache.set(digest, verdict, settings.API_KEY_CACHE_TTL)
    return None if verdict == _NO_KEY else verdict


def verify(authorization: str | None) -> KeyHolder:
    """The holder of the key an `Authorization` header carries; raises DRF's
    NotAuthenticated (no header) or AuthenticationFailed (not a valid bearer key)."""
    if not authorization:
        raise exceptions.NotAuthenticated(MISSING)
    scheme, _, key = authorization.partition(" ")
    holder = holder_of(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if holder is None:
        raise exceptions.AuthenticationFailed(INVALID)
    return holder

"""Making and revoking API keys. A key is 32 random bytes (URL-safe base64); the database
keeps its SHA-256 and its first characters, so the key itself is shown once and never again."""

import hashlib
import secrets

from django.db.models import QuerySet
from django.utils import timezone

from apikeys.models import ApiKey

PREFIX_LENGTH = 8


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """(key, prefix, hash) of a fresh key whose prefix no other key has."""
    while True:
        key = secrets.token_urlsafe(32)
        prefix = key[:PREFIX_LENGTH]
        # A prefix starting with "-" would read as an option to `manage.py api_keys revoke`.
        if not prefix.startswith("-") and not ApiKey.objects.filter(prefix=prefix).exists():
            return key, prefix, hash_key(key)


def create_key(name: str) -> tuple[ApiKey, str]:
    """A new key named `name`: its stored row and the key, which nothing can recover later."""
    key, prefix, digest = new_key()
    return ApiKey.objects.create(name=name, prefix=prefix, key_hash=digest), key


def revoke(keys: QuerySet[ApiKey]) -> int:
    """Revoke `keys` (those not revoked yet; returns how many). API processes stop accepting
    them once their cached verdict expires (API_KEY_CACHE_TTL)."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def revoke_key(prefix: str) -> ApiKey | None:
    """Revoke the key whose prefix (or whole key) is given; None when there is none."""
    keys = ApiKey.objects.filter(prefix=prefix[:PREFIX_LENGTH])
    revoke(keys)
    return keys.first()

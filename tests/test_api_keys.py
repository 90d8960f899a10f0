"""API keys on a real server in production settings (API_AUTH=required, HTTPS behind a
proxy that sends X-Forwarded-Proto; plain HTTP is redirected, but not the probes): no key or a
bad one is a 401 in the error shape, on DRF views and on the plain ones (GET by id, readiness)
alike; a valid key passes; a revoked one stops working within API_KEY_CACHE_TTL. Keys are
made and revoked with `manage.py api_keys` and the admin."""

import io
import time
import uuid

import pytest
import requests
from django.core.management import call_command

from apikeys.models import ApiKey
from tests.api_process import BASE_PORT, api_server_with

pytestmark = pytest.mark.cluster

CACHE_TTL = 1.0
HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.fixture(scope="module")
def server(django_db_setup) -> str:
    with api_server_with(
        BASE_PORT + 5,
        DJANGO_ENV="production",
        SECRET_KEY="test-only-production-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        API_AUTH="required",
        API_KEY_CACHE_TTL=str(CACHE_TTL),
    ) as base:
        yield base


@pytest.fixture
def keys(shards_db):
    yield
    ApiKey.objects.all().delete()


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("api_keys", *args, stdout=out)
    return out.getvalue().strip()


def bearer(key: str) -> dict[str, str]:
    return {**HTTPS, "Authorization": f"Bearer {key}"}


def test_the_command_prints_a_key_once_and_stores_only_its_hash(keys):
    key = command("create", "billing")
    assert len(key) == 43  # 32 random bytes, URL-safe base64
    row = ApiKey.objects.get()
    assert (row.name, row.prefix, row.revoked) == ("billing", key[:8], False)
    assert key not in row.key_hash and len(row.key_hash) == 64
    assert command("list").split() == [key[:8], "active", *command("list").split()[2:3], "billing"]
    assert command("revoke", key[:8]) == f"revoked {key[:8]} (billing)"
    assert "revoked" in command("list")


def test_health_answers_over_plain_http_without_a_key(server):
    response = requests.get(f"{server}/health", timeout=5, allow_redirects=False)
    assert response.status_code == 200


def test_plain_http_to_the_api_is_redirected_to_https(server):
    response = requests.get(f"{server}/api/v1/users/", timeout=5, allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"].startswith("https://")


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/api/v1/users/", HTTPS, "not_authenticated"),
        ("/api/v1/users/", bearer("not-a-key"), "authentication_failed"),
        (
            "/api/v1/users/",
            {**HTTPS, "Authorization": "Basic dXNlcjpwdw=="},
            "authentication_failed",
        ),
        (f"/api/v1/users/{uuid.uuid4()}", HTTPS, "not_authenticated"),
        (f"/api/v1/users/{uuid.uuid4()}", bearer("not-a-key"), "authentication_failed"),
        ("/api/v1/shards/stats", HTTPS, "not_authenticated"),
        ("/health/ready", {}, "not_authenticated"),
    ],
)
def test_no_valid_key_is_a_401_in_the_error_shape(server, path, headers, code):
    response = requests.get(f"{server}{path}", headers=headers, timeout=5, allow_redirects=False)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code
    assert set(response.json()) == {"error", "code"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_key_passes_everywhere(server, keys):
    key = command("create", "client")
    created = requests.post(
        f"{server}/api/v1/users/",
        json={"name": "Ann", "email": "ann@example.com"},
        headers=bearer(key),
        timeout=5,
    )
    assert created.status_code == 201, created.text
    assert "max-age=" in created.headers["Strict-Transport-Security"]
    assert created.headers["X-Frame-Options"] == "DENY"
    user = requests.get(f"{server}{created.headers['Location']}", headers=bearer(key), timeout=5)
    assert user.status_code == 200
    for path in ("/api/v1/users/", "/api/v1/shards/stats", "/health/ready"):
        assert requests.get(f"{server}{path}", headers=bearer(key), timeout=5).status_code == 200
    # A probe speaks plain HTTP: readiness is not redirected.
    probe = requests.get(
        f"{server}/health/ready",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
        allow_redirects=False,
    )
    assert probe.status_code == 200


def test_a_revoked_key_is_refused_within_the_cache_ttl(server, keys):
    key = command("create", "leaver")
    path = f"{server}/api/v1/users/{uuid.uuid4()}"
    assert requests.get(path, headers=bearer(key), timeout=5).status_code == 404  # cached now
    command("revoke", key[:8])
    revoked_at = time.monotonic()
    while requests.get(path, headers=bearer(key), timeout=5).status_code != 401:
        assert time.monotonic() - revoked_at < CACHE_TTL + 1, "the revoked key still works"
        time.sleep(0.05)
    listing = requests.get(f"{server}/api/v1/users/", headers=bearer(key), timeout=5)
    assert listing.json()["code"] == "authentication_failed"


def test_the_admin_creates_a_key_shows_it_once_and_revokes_it(keys):
    from django.contrib.auth.models import User
    from django.contrib.messages import get_messages
    from django.test import Client

    from apikeys.keys import hash_key

    admin_user = User.objects.create_superuser("keys-admin", password="pw")
    try:
        client = Client()
        client.force_login(admin_user)
        added = client.post("/admin/apikeys/apikey/add/", {"name": "partner"})
        assert added.status_code == 302
        messages = [str(m) for m in get_messages(added.wsgi_request)]
        (shown,) = [m for m in messages if "shown once" in m]
        key = shown.split(": ")[1].split(" ")[0]
        row = ApiKey.objects.get()
        assert (row.name, row.key_hash, row.prefix) == ("partner", hash_key(key), key[:8])
        revoked = client.post(
            "/admin/apikeys/apikey/",
            {"action": "revoke_selected", "_selected_action": [row.pk]},
        )
        assert revoked.status_code == 302
        row.refresh_from_db()
        assert row.revoked
    finally:
        admin_user.delete()

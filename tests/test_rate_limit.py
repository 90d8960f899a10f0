"""The per-key rate limit (API_KEY_RATE) with its counts in the real Redis (REDIS_URL):
a key over its rate gets 429 `throttled` with `Retry-After`, on DRF views and on GET by id
alike, without touching other keys; a Redis that does not answer limits nothing."""

import io
import socket
import uuid

import pytest
import requests
from django.core.management import call_command

from apikeys.models import ApiKey
from tests.api_process import BASE_PORT, api_server_with

pytestmark = pytest.mark.cluster

REDIS_URL = "redis://127.0.0.1:6379/0"
RATE = 3


def server_with(port: int, redis_url: str):
    return api_server_with(
        port,
        API_AUTH="required",
        API_KEY_RATE=f"{RATE}/min",
        REDIS_URL=redis_url,
    )


@pytest.fixture(scope="module")
def limited(django_db_setup) -> str:
    with server_with(BASE_PORT + 7, REDIS_URL) as base:
        yield base


@pytest.fixture
def keys(shards_db):
    yield
    ApiKey.objects.all().delete()


def new_key(name: str) -> dict[str, str]:
    out = io.StringIO()
    call_command("api_keys", "create", name, stdout=out)
    return {"Authorization": f"Bearer {out.getvalue().strip()}"}


def test_a_key_over_its_rate_gets_429_with_retry_after_on_every_path(limited, keys):
    key, other = new_key("busy"), new_key("quiet")
    paths = ["/api/v1/users/", f"/api/v1/users/{uuid.uuid4()}", "/api/v1/shards/stats"]
    for path in paths:
        assert requests.get(f"{limited}{path}", headers=key, timeout=5).status_code != 429
    for path in [*paths, "/health/ready"]:
        refused = requests.get(f"{limited}{path}", headers=key, timeout=5)
        assert refused.status_code == 429, path
        assert refused.json()["code"] == "throttled"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert requests.get(f"{limited}/api/v1/users/", headers=other, timeout=5).status_code == 200


def test_without_redis_the_limit_lets_requests_through(django_db_setup, keys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    key = new_key("no-redis")
    with server_with(BASE_PORT + 8, f"redis://127.0.0.1:{closed}/0") as base:
        for _ in range(RATE + 2):
            assert requests.get(f"{base}/api/v1/users/", headers=key, timeout=5).status_code == 200

"""End to end: a real gunicorn with gevent workers on the real cluster."""

import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_for_replicas

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


def test_create_read_update_delete_with_the_token(api_server, shards_db):
    s = requests.Session()
    r = s.post(f"{api_server}/api/v1/users/", json={"name": "E2E", "email": "e2e@example.com"})
    assert r.status_code == 201
    user, token = r.json(), r.headers["X-Consistency-Token"]
    headers = {"X-Consistency-Token": token}
    assert s.get(f"{api_server}/api/v1/users/{user['id']}", headers=headers).json() == user
    r = s.put(f"{api_server}/api/v1/users/{user['id']}", json={"name": "E2E 2"}, headers=headers)
    headers = {"X-Consistency-Token": r.headers["X-Consistency-Token"]}
    assert (
        s.get(f"{api_server}/api/v1/users/{user['id']}", headers=headers).json()["name"] == "E2E 2"
    )
    r = s.delete(f"{api_server}/api/v1/users/{user['id']}", headers=headers)
    assert r.status_code == 204
    headers = {"X-Consistency-Token": r.headers["X-Consistency-Token"]}
    assert s.get(f"{api_server}/api/v1/users/{user['id']}", headers=headers).status_code == 404


def test_answers_announce_their_length_instead_of_chunks(api_server, shards_db):
    s = requests.Session()
    created = s.post(
        f"{api_server}/api/v1/users/", json={"name": "Len", "email": "len@example.com"}
    )
    answers = [
        created,
        s.get(f"{api_server}/api/v1/users/{created.json()['id']}"),
        s.get(f"{api_server}/api/v1/users/?limit=5"),
        s.get(f"{api_server}/api/v1/users/not-an-id"),
        s.get(f"{api_server}/health"),
    ]
    for r in answers:
        assert "Transfer-Encoding" not in r.headers, r.url
        assert int(r.headers["Content-Length"]) == len(r.content), r.url
    deleted = s.delete(f"{api_server}/api/v1/users/{created.json()['id']}")
    assert deleted.status_code == 204
    # No body, and none announced (RFC 9110: no Content-Length on a 204).
    assert "Content-Length" not in deleted.headers
    assert "Transfer-Encoding" not in deleted.headers


def test_concurrent_creates_with_one_email_give_one_201_and_409s(api_server, shards_db):
    barrier = threading.Barrier(10)

    def create(n: int) -> int:
        barrier.wait()
        return requests.post(
            f"{api_server}/api/v1/users/", json={"name": f"R{n}", "email": "Race@Example.com"}
        ).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(create, range(10)))
    assert statuses == [201] + [409] * 9


def test_a_walk_is_complete_ordered_and_duplicate_free_while_rows_are_inserted(
    api_server, shards_db
):
    s = requests.Session()
    before = set()
    for n in range(40):
        r = s.post(f"{api_server}/api/v1/users/", json={"name": f"B{n}", "email": f"b{n}@x.io"})
        before.add(r.json()["id"])
    wait_for_replicas()
    stop = threading.Event()

    def insert_more() -> None:
        with requests.Session() as writer:
            n = 0
            while not stop.is_set():
                writer.post(
                    f"{api_server}/api/v1/users/",
                    json={"name": f"Late {n}", "email": f"late{n}-{uuid.uuid4().hex[:6]}@x.io"},
                )
                n += 1

    thread = threading.Thread(target=insert_more)
    thread.start()
    try:
        seen, url = [], f"{api_server}/api/v1/users/?limit=7"
        while url:
            body = s.get(url).json()
            seen.extend(body["results"])
            url = body["next"]
    finally:
        stop.set()
        thread.join()
    ids = [u["id"] for u in seen]
    assert len(ids) == len(set(ids)), "duplicate rows in the walk"
    assert before <= set(ids), "rows that existed before the walk are missing"
    keys = [(u["created_at"], u["id"]) for u in seen]
    assert keys == sorted(keys, reverse=True)


def test_errors_from_the_server_share_one_json_shape(api_server):
    checks = [
        requests.get(f"{api_server}/nothing/here"),
        requests.get(f"{api_server}/api/v1/users/not-a-uuid"),
        requests.post(
            f"{api_server}/api/v1/users/", data="x", headers={"Content-Type": "text/plain"}
        ),
        requests.delete(f"{api_server}/api/v1/users/"),
        requests.post(
            f"{api_server}/api/v1/users/",
            data=b'{"name":"' + b"x" * 100_000 + b'"}',
            headers={"Content-Type": "application/json"},
        ),
    ]
    assert [r.status_code for r in checks] == [404, 404, 415, 405, 413]
    for r in checks:
        body = r.json()
        assert set(body) >= {"error", "code"}
        assert "Traceback" not in r.text and "127.0.0.1" not in r.text


def test_sharding_disabled_runs_the_same_code_on_shard_zero(shards_db):
    script = """
import django, os, uuid
django.setup()
from django.test import Client
from django.conf import settings
from shards.topology import all_shards
assert settings.SHARDING_COUNT == 1 and len(all_shards()) == 1
c = Client()
r = c.post("/api/v1/users/", {"name": "Solo", "email": "solo@example.com"},
           content_type="application/json")
assert r.status_code == 201, r.content
uid = r.json()["id"]
assert c.get(f"/api/v1/users/{uid}").status_code == 200
assert c.get("/health").json()["mode"] == "single"
print(uid)
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "messenger.settings",
        "SHARDING_ENABLED": "false",
        "SHARD_DB_NAME": "messenger_test",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:{}/control_test".format(
            os.environ.get("CONTROL_DB_PORT", "5439")
        ),
        "PGBOUNCER_BASE_PORT": os.environ.get("PGBOUNCER_BASE_PORT", "6430"),
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    user_id = out.stdout.strip().splitlines()[-1]
    from django.db import connections

    with connections["shard_0"].cursor() as cursor:
        cursor.execute("SELECT name FROM users WHERE id = %s", [user_id])
        assert cursor.fetchone() == ("Solo",)

"""Replica lag and failures on a real cluster: processes really stopped and started.

Runs on its own 3-shard cluster (tests/fault_cluster.py) so stopping a primary never
disturbs the other tests."""

import threading
import time
import uuid

import pytest
import requests

from shards.routing import shard_for_email, shard_for_user_id
from tests.fault_cluster import SHARDS, FaultCluster, running

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
TOKEN = "X-Consistency-Token"


@pytest.fixture(scope="module")
def fault():
    with running(FaultCluster()) as cluster:
        yield cluster


@pytest.fixture
def api(fault):
    fault.up()  # whatever a test stopped comes back
    fault.wait_ready()
    for shard in range(SHARDS):
        with fault.replica(shard) as conn:
            if conn.execute("SELECT pg_is_wal_replay_paused()").fetchone()[0]:
                conn.execute("SELECT pg_wal_replay_resume()")
    yield fault
    fault.up()


def email_on(shard: int) -> str:
    while True:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        if shard_for_email(email, SHARDS) == shard:
            return email


def email_not_on(shard: int) -> str:
    while True:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        if shard_for_email(email, SHARDS) != shard:
            return email


def create_on(api, shard: int, token: str | None = None) -> tuple[dict, str]:
    """A user whose id routes to `shard` (ids are the server's: retry until one does)."""
    for _ in range(200):
        r = requests.post(
            f"{api.base_url}/api/v1/users/",
            json={"name": "Fault", "email": email_not_on(99)},
            headers={TOKEN: token} if token else {},
        )
        assert r.status_code == 201, r.text
        if shard_for_user_id(r.json()["id"], SHARDS) == shard:
            return r.json(), r.headers[TOKEN]
    raise AssertionError("no id landed on the shard")


def test_with_replay_paused_every_read_with_the_token_shows_the_last_write(api):
    for shard in range(SHARDS):
        with api.replica(shard) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
    base = f"{api.base_url}/api/v1/users"
    r = requests.post(f"{base}/", json={"name": "Paused", "email": email_not_on(99)})
    user, token = r.json(), r.headers[TOKEN]
    got = requests.get(f"{base}/{user['id']}", headers={TOKEN: token})
    assert got.status_code == 200 and got.json() == user
    # Without a token, a row missing on the replica is still found on the primary.
    assert requests.get(f"{base}/{user['id']}").status_code == 200
    r = requests.put(f"{base}/{user['id']}", json={"name": "Changed"}, headers={TOKEN: token})
    token = r.headers[TOKEN]
    got = requests.get(f"{base}/{user['id']}", headers={TOKEN: token})
    assert got.json()["name"] == "Changed"
    assert got.json()["updated_at"] == r.json()["updated_at"]
    listed = requests.get(f"{base}/?limit=100", headers={TOKEN: token}).json()["results"]
    assert [u["name"] for u in listed if u["id"] == user["id"]] == ["Changed"]
    r = requests.delete(f"{base}/{user['id']}", headers={TOKEN: token})
    token = r.headers[TOKEN]
    assert requests.get(f"{base}/{user['id']}", headers={TOKEN: token}).status_code == 404
    listed = requests.get(f"{base}/?limit=100", headers={TOKEN: token}).json()["results"]
    assert user["id"] not in [u["id"] for u in listed]


def _replica_ok(api, shard: int) -> bool:
    body = requests.get(f"{api.base_url}/api/v1/shards/stats").json()
    return body["shards"][shard]["replica_ok"]


def test_a_stopped_replica_is_skipped_and_used_again_after_it_returns(api):
    user, _ = create_on(api, 1)
    api.stop("shard-1-replica")
    deadline = time.monotonic() + 3
    while _replica_ok(api, 1):
        assert time.monotonic() < deadline, "replica still reported ok"
        time.sleep(0.1)
    for _ in range(20):
        r = requests.get(f"{api.base_url}/api/v1/users/{user['id']}")
        assert r.status_code == 200
    ready = requests.get(f"{api.base_url}/health/ready")
    assert ready.status_code == 503 and "shard-1-replica" in ready.json()["failing"]
    api.up()
    deadline = time.monotonic() + 10
    while not _replica_ok(api, 1):
        assert time.monotonic() < deadline, "replica not used again"
        time.sleep(0.1)


def _assert_shard_unavailable(response, shard: int) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] in ("shard_unavailable", "write_outcome_unknown")
    assert f"shard-{shard}" in body["fields"]["shards"]
    assert int(response.headers["Retry-After"]) > 0


def test_a_stopped_pgbouncer_fails_only_its_shard_and_recovers(api):
    victim, _ = create_on(api, 2)
    survivor, _ = create_on(api, 0)
    api.stop("pgbouncer-2")
    base = f"{api.base_url}/api/v1/users"
    assert requests.get(f"{base}/{survivor['id']}").status_code == 200
    # Reads of the shard come from its replica, which does not depend on its PgBouncer.
    time.sleep(0.5)  # the replica replays the victim (no token below)
    got = requests.get(f"{base}/{victim['id']}")
    assert got.status_code == 200 and got.json() == victim
    _assert_shard_unavailable(requests.put(f"{base}/{victim['id']}", json={"name": "x"}), 2)
    statuses = set()
    for _ in range(12):
        r = requests.post(f"{base}/", json={"name": "During", "email": email_not_on(2)})
        statuses.add(r.status_code)
        if r.status_code == 201:
            assert shard_for_user_id(r.json()["id"], SHARDS) != 2
        else:
            _assert_shard_unavailable(r, 2)
    assert 201 in statuses
    assert requests.get(f"{base}/").status_code == 200  # lists read replicas
    stats = requests.get(f"{api.base_url}/api/v1/shards/stats").json()
    assert stats["shards"][2]["healthy"] is False and stats["shards"][0]["healthy"] is True
    api.up()
    api.wait_ready()
    assert requests.get(f"{base}/{victim['id']}").status_code == 200
    assert requests.get(f"{base}/").status_code == 200


def test_a_stopped_primary_fails_writes_and_serves_reads_from_its_replica(api):
    victim, _ = create_on(api, 1)
    time.sleep(0.5)  # let the replica replay it
    api.stop("shard-1")
    base = f"{api.base_url}/api/v1/users"
    started = time.monotonic()
    _assert_shard_unavailable(requests.put(f"{base}/{victim['id']}", json={"name": "x"}), 1)
    assert time.monotonic() - started < 10
    got = requests.get(f"{base}/{victim['id']}")
    assert got.status_code == 200 and got.json() == victim
    # Creates whose id and email avoid shard 1 still succeed.
    created = 0
    for _ in range(12):
        r = requests.post(f"{base}/", json={"name": "During", "email": email_not_on(1)})
        if r.status_code == 201:
            created += 1
            assert shard_for_user_id(r.json()["id"], SHARDS) != 1
        else:
            _assert_shard_unavailable(r, 1)
    assert created
    # Lists read replicas: the stopped primary does not make them fail.
    assert requests.get(f"{base}/?limit=5").status_code == 200
    api.up()
    api.wait_ready()
    r = requests.put(f"{base}/{victim['id']}", json={"name": "Back"})
    assert r.status_code == 200 and r.json()["name"] == "Back"


def test_under_load_a_replica_restart_causes_no_stale_read_and_loses_no_user(api):
    base = f"{api.base_url}/api/v1/users"
    acknowledged: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as s:
            token = None
            while not stop.is_set():
                r = s.post(
                    f"{base}/",
                    json={"name": "Load", "email": email_not_on(99)},
                    headers={TOKEN: token} if token else {},
                )
                if r.status_code != 201:
                    problems.append(f"create {r.status_code}")
                    continue
                token = r.headers[TOKEN]
                user = r.json()
                acknowledged.append(user["id"])
                got = s.get(f"{base}/{user['id']}", headers={TOKEN: token})
                if got.status_code != 200 or got.json() != user:
                    problems.append(f"stale read {got.status_code}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    api.stop("shard-0-replica")
    time.sleep(2)
    api.up()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert acknowledged and not problems, problems[:5]
    found = 0
    for shard in range(SHARDS):
        with api.primary(shard) as conn:
            rows = conn.execute("SELECT id::text FROM users").fetchall()
            ids = {row[0] for row in rows}
        found += len(
            [i for i in acknowledged if shard_for_user_id(i, SHARDS) == shard and i in ids]
        )
    assert found == len(acknowledged)


def test_a_replica_lagging_past_the_limit_is_skipped_until_it_catches_up(api):
    with api.replica(0) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    user, _ = create_on(api, 0)  # the primary moves on, the replica does not
    deadline = time.monotonic() + 8
    while _replica_ok(api, 0):
        assert time.monotonic() < deadline, "a paused replica was never reported lagging"
        time.sleep(0.2)
    stats = requests.get(f"{api.base_url}/api/v1/shards/stats").json()["shards"][0]
    assert stats["replica_lag_seconds"] > 2
    got = requests.get(f"{api.base_url}/api/v1/users/{user['id']}")
    assert got.status_code == 200 and got.json() == user
    assert _replica_ok(api, 1), "other shards' replicas are not affected"
    with api.replica(0) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 5
    while not _replica_ok(api, 0):
        assert time.monotonic() < deadline, "a caught-up replica was not used again"
        time.sleep(0.2)

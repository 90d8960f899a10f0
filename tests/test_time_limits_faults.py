"""Time limits on a real cluster: a shard's PgBouncer or replica cut off by a partition (a
black-hole proxy: packets vanish, no reset), a PgBouncer or a primary killed, alone and
under load.

The API of this module runs with the production defaults of every time limit (DB_TIMEOUT 2 s,
DB_REPLICA_TIMEOUT 0.8 s, DB_PROBE_TIMEOUT 0.8 s, REPLICA_CHECK_INTERVAL 1 s) and reaches
shard 2's PgBouncer and replica through proxies (tests/blackhole.py)."""

import statistics
import threading
import time

import pytest
import requests

from shards.routing import shard_for_user_id
from tests.fault_cluster import SHARDS, FaultCluster, running
from tests.fault_workload import check, merged, run_workload, verify_writes
from tests.test_faults import TOKEN, create_on, email_not_on

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
VICTIM = 2  # the proxied shard
LIMIT = 2.0  # DB_TIMEOUT's default
ANSWER_WITHIN = 3.0  # the bound for a 503 from an unreachable shard
DETECT_WITHIN = 2.0  # and for detecting a partition


@pytest.fixture(scope="module")
def fault():
    with running(FaultCluster(proxied_shard=VICTIM), REPLICA_CHECK_INTERVAL="1.0") as cluster:
        yield cluster


@pytest.fixture
def api(fault):
    fault.heal()
    fault.up()
    fault.wait_ready(timeout=30)
    yield fault
    fault.heal()
    fault.up()


def users(api) -> str:
    return f"{api.base_url}/api/v1/users"


def timed(method: str, url: str, **kw) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kw)
    return response, time.monotonic() - started


def shard_state(api, shard: int) -> dict:
    return requests.get(f"{api.base_url}/api/v1/shards/stats", timeout=10).json()["shards"][shard]


def seconds_until(predicate, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "never happened"
        time.sleep(0.05)
    return time.monotonic() - started


def assert_unavailable(response: requests.Response, shard: int) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] in ("shard_unavailable", "write_outcome_unknown"), body
    assert f"shard-{shard}" in body["fields"]["shards"]


def test_a_partitioned_pgbouncer_costs_the_limit_once_then_503_fast_never_busy(api):
    victim, _ = create_on(api, VICTIM)
    survivor, _ = create_on(api, 0)
    api.proxies["pgbouncer"].partition()
    partitioned = time.monotonic()
    # More concurrent writes than the pool has connections: the first ones hang on the
    # partition, the others wait for the pool. All answer 503 shard_unavailable in time.
    answers: list[tuple[requests.Response, float]] = []

    def put() -> None:
        answers.append(timed("PUT", f"{users(api)}/{victim['id']}", json={"name": "x"}))

    threads = [threading.Thread(target=put) for _ in range(30)]
    for thread in threads:
        thread.start()
    ok, took = timed("GET", f"{users(api)}/{survivor['id']}")
    assert ok.status_code == 200 and took < 1.0, "another shard was slowed down"
    for thread in threads:
        thread.join()
    assert len(answers) == 30
    for response, took in answers:
        assert_unavailable(response, VICTIM)
        assert response.json()["code"] != "server_busy"
        assert took < ANSWER_WITHIN, f"503 after {took:.2f}s"
    # Known down by now (the 30 requests took the limit): a request fails in milliseconds.
    assert time.monotonic() - partitioned < ANSWER_WITHIN + 1.0
    times = []
    for _ in range(5):
        response, took = timed("PUT", f"{users(api)}/{victim['id']}", json={"name": "y"})
        assert_unavailable(response, VICTIM)
        times.append(took)
    assert statistics.median(times) < 0.05, times
    # Reads of the shard come from its replica, which does not depend on the PgBouncer.
    got = requests.get(f"{users(api)}/{victim['id']}")
    assert got.status_code == 200 and got.json() == victim
    api.heal()
    api.wait_ready()
    assert requests.put(f"{users(api)}/{victim['id']}", json={"name": "Back"}).status_code == 200


def test_a_partition_is_detected_within_two_seconds_by_parallel_bounded_probes(api):
    victim, _ = create_on(api, VICTIM)
    api.proxies["pgbouncer"].partition()
    api.proxies["replica"].partition()
    # No request touches the shard meanwhile: the background probes alone find it down.
    time.sleep(DETECT_WITHIN)
    for method in ("GET", "PUT"):
        response, took = timed(method, f"{users(api)}/{victim['id']}", json={"name": "x"})
        assert_unavailable(response, VICTIM)
        assert took < 0.1, f"{method} took {took:.2f}s: the partition was not detected yet"
    # A readiness check probes every database now, primary and replica at once.
    ready, took = timed("GET", f"{api.base_url}/health/ready")
    assert ready.status_code == 503 and took < 1.5, took
    assert {f"shard-{VICTIM}-primary", f"shard-{VICTIM}-replica"} <= set(ready.json()["failing"])


def test_partial_lists_answer_within_the_limit_naming_the_cut_off_shard(api):
    create_on(api, 0)
    api.proxies["pgbouncer"].partition()
    api.proxies["replica"].partition()
    partial, took = timed("GET", f"{users(api)}/?partial=true&limit=10")
    assert partial.status_code == 200 and took < ANSWER_WITHIN, (partial.text, took)
    assert partial.json()["partial"] is True
    assert partial.json()["missing_shards"] == [f"shard-{VICTIM}"]
    whole, took = timed("GET", f"{users(api)}/?limit=10")
    assert_unavailable(whole, VICTIM)
    assert took < ANSWER_WITHIN


def test_a_partitioned_replica_falls_back_to_the_primary_within_the_limit(api):
    victim, _ = create_on(api, VICTIM)
    time.sleep(0.3)  # replayed, so the replica would serve it
    api.proxies["replica"].partition()
    partitioned = time.monotonic()
    for _ in range(3):
        got, took = timed("GET", f"{users(api)}/{victim['id']}")
        assert got.status_code == 200 and got.json() == victim
        assert took < LIMIT, f"read took {took:.2f}s"
    seconds_until(lambda: not shard_state(api, VICTIM)["replica_ok"])
    assert time.monotonic() - partitioned < DETECT_WITHIN + LIMIT
    got, took = timed("GET", f"{users(api)}/{victim['id']}")
    assert got.status_code == 200 and took < 0.5


def test_a_killed_pgbouncer_leaves_its_shard_readable(api):
    victim, token = create_on(api, VICTIM)
    time.sleep(0.3)
    api.stop(f"pgbouncer-{VICTIM}")
    got = requests.get(f"{users(api)}/{victim['id']}", headers={TOKEN: token})
    assert got.status_code == 200 and got.json() == victim
    listed = requests.get(f"{users(api)}/?limit=100", headers={TOKEN: token})
    assert listed.status_code == 200, listed.text
    assert victim["id"] in [u["id"] for u in listed.json()["results"]]
    response, took = timed("PUT", f"{users(api)}/{victim['id']}", json={"name": "x"})
    assert_unavailable(response, VICTIM)
    assert took < ANSWER_WITHIN


# --- under load ---------------------------------------------------------------------------
RUN_SECONDS = 8.0
FAULT_AT, HEAL_AT = 1.0, 5.0


def _baseline(api):
    """The same load without a fault."""
    report = run_workload(api.base_url, RUN_SECONDS, shards=SHARDS)
    verify_writes(report, api.primary)
    assert not check(report, limit=LIMIT), check(report, limit=LIMIT)
    print(f"\nbaseline: {report.summary(faulty={VICTIM})}")
    return report


def _scenario(api, inject, heal) -> None:
    before = _baseline(api)
    report = run_workload(
        api.base_url, RUN_SECONDS, shards=SHARDS, events=[(FAULT_AT, inject), (HEAL_AT, heal)]
    )
    api.heal()
    api.up()
    api.wait_ready(timeout=30)
    verify_writes(report, api.primary)
    # Fault-free runs just before and just after: the machine is shared, and its load drifts
    # within seconds; together they span the fault run.
    baseline = merged(before, _baseline(api))
    summary = report.summary(faulty={VICTIM})
    print(f"\nfault: {summary}, baseline healthy p99: {baseline.p99({VICTIM}):.4f}")
    print(f"slowest healthy (offset s, seconds, kind, status): {report.slowest({VICTIM})}")
    failures = check(report, limit=LIMIT, baseline=baseline, faulty={VICTIM})
    assert not failures, failures[:10]
    assert summary["server_busy"] == 0
    felt = [
        s for s in report.samples if VICTIM in s.shards and (s.status == 503 or s.seconds > 0.5)
    ]
    assert felt, "the fault was never felt: the scenario proved nothing"
    assert any(s.shards == frozenset({0}) and s.status == 200 for s in report.samples)


@pytest.mark.parametrize(
    "scenario",
    ["partition-pgbouncer", "partition-replica", "kill-pgbouncer", "kill-primary"],
)
def test_under_load_a_fault_loses_nothing_and_keeps_other_shards_fast(api, scenario):
    proxy = {"partition-pgbouncer": "pgbouncer", "partition-replica": "replica"}.get(scenario)
    if proxy:
        inject, heal = api.proxies[proxy].partition, api.proxies[proxy].heal
    else:
        name = f"pgbouncer-{VICTIM}" if scenario == "kill-pgbouncer" else f"shard-{VICTIM}"
        inject, heal = (lambda: api.stop(name)), api.up
    _scenario(api, inject, heal)


def test_ids_in_the_workload_route_like_the_server(api):
    """The workload tags requests with shards by the same routing the server uses."""
    user, _ = create_on(api, VICTIM)
    assert shard_for_user_id(user["id"], SHARDS) == VICTIM
    assert email_not_on(VICTIM)

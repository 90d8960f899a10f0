"""Every scenario's size, length and pass/fail thresholds, in one table.

Plain data (no locust import): `run.py` reads it to build the locust command line and to judge
the result. The locustfile of scenario NAME is `loadtest/scenarios/<module>.py`.

Latency bounds are for the reference machine (2 shared cores running the load generator, the
API, 10 PostgreSQL servers and 5 PgBouncers at once; docs/LOADTEST_INSTRUCTIONS.md has the
measured figures). They sit at 2-3x the p95/p99 measured while other jobs loaded the same
cores, which is 5-30x what a quiet machine shows: a busy neighbour does not fail a run, a
regression that multiplies latency (a lost index, a blocking call in a gevent worker, a
lock convoy) does. `stress`, `spike` and `10k` ask for more than the quiet p99 allows for
queueing, so their bounds only catch runaway queues; what they must keep is 0 failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Thresholds:
    """A run passes when every bound holds. Latencies are over all requests (aggregated)."""

    max_failures: int = 0
    max_consistency_violations: int = 0
    max_exceptions: int = 0
    p95_ms: float | None = None
    p99_ms: float | None = None
    min_requests: int = 1
    # Request rate while every user is running, as a share of users / pacing (the rate asked
    # for): proves that the users are active and served, not just spawned. Paced scenarios only.
    min_rate_share: float | None = None
    # Peak of established client connections to the API's port (local targets only).
    min_connections: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    module: str
    summary: str
    users: int = 10
    spawn_rate: float = 10.0
    run_time: int = 60  # seconds, ramp included
    processes: int = 1  # locust worker processes; 1 = a single process, no master
    shape: bool = False  # a LoadTestShape in the module drives users and time
    # Seconds between the starts of a user's tasks (mixed.paced), passed to the module as
    # LOADTEST_PACING; None for scenarios with a random think time instead.
    pacing: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def ramp_seconds(self) -> float:
        return self.users / self.spawn_rate if self.spawn_rate else 0.0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "smoke",
            "smoke",
            "10 users, 30 s, mixed workload: quick check of every endpoint",
            users=10,
            spawn_rate=5,
            run_time=30,
            thresholds=Thresholds(p95_ms=250, p99_ms=500),
        ),
        Profile(
            "load",
            "load",
            "100 users, 60 s, mixed workload (70 % reads): the standard load test",
            users=100,
            spawn_rate=20,
            run_time=60,
            thresholds=Thresholds(p95_ms=300, p99_ms=600),
        ),
        Profile(
            "custom",
            "custom",
            "USERS users for DURATION s, mixed workload, one task per PACING s per user",
            users=50,
            spawn_rate=10,
            run_time=60,
            pacing=1,
            thresholds=Thresholds(p95_ms=500, p99_ms=1000),
        ),
        Profile(
            "10k",
            "c10k",
            "10,000 users on one keep-alive connection each; ramp 100 s, then 120 s together",
            users=10_000,
            spawn_rate=100,
            run_time=220,
            processes=2,
            pacing=60,
            thresholds=Thresholds(
                p95_ms=1000, p99_ms=2000, min_rate_share=0.85, min_connections=10_000
            ),
        ),
        Profile(
            "crud",
            "crud",
            "20 users, 60 s: create, get, list, update, get, delete, get-404, bodies checked",
            users=20,
            spawn_rate=10,
            run_time=60,
            thresholds=Thresholds(p95_ms=400, p99_ms=800),
        ),
        Profile(
            "stress",
            "stress",
            "500 users, 120 s, mixed workload at about the API's capacity on 2 cores",
            users=500,
            spawn_rate=50,
            run_time=120,
            thresholds=Thresholds(p95_ms=1500, p99_ms=3000),
        ),
        Profile(
            "spike",
            "spike",
            "load shape: 20 users, sudden jump to 300, back to 20 (90 s)",
            users=300,
            spawn_rate=300,
            run_time=90,
            shape=True,
            thresholds=Thresholds(p95_ms=1500, p99_ms=3000),
        ),
        Profile(
            "soak",
            "soak",
            "60 users at a steady ~60 req/s for 5 minutes: leaks, drift, slow growth",
            users=60,
            spawn_rate=10,
            run_time=300,
            pacing=1,
            thresholds=Thresholds(p95_ms=250, p99_ms=500, min_rate_share=0.85),
        ),
        Profile(
            "pagination",
            "pagination",
            "10 users walk cursor pages deep; order, duplicates and missing rows checked",
            users=10,
            spawn_rate=10,
            run_time=60,
            thresholds=Thresholds(p95_ms=400, p99_ms=800),
        ),
        Profile(
            "read",
            "read",
            "100 users, 60 s, read-heavy: 80 % reads, 20 % writes",
            users=100,
            spawn_rate=20,
            run_time=60,
            thresholds=Thresholds(p95_ms=300, p99_ms=600),
        ),
        Profile(
            "write",
            "write",
            "100 users, 60 s, write-heavy: 80 % creates, updates and deletes",
            users=100,
            spawn_rate=20,
            run_time=60,
            thresholds=Thresholds(p95_ms=400, p99_ms=800),
        ),
    ]
}

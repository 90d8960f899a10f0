"""A load of API clients for fault scenarios, and the checks every scenario must pass.

    report = run_workload(base_url, 8, events=[(1.0, inject), (5.0, heal)], shards=3)
    ... bring the cluster back ...
    verify_writes(report, primary)            # reads every acknowledged user on its primary
    assert not check(report, limit=2.0, baseline=baseline_report, faulty={2})

Each client thread is one API client with its own consistency token. It loops: create a
user, read one of its older users without the token (the replica's share of the load),
read the new one back, rename it (half the time) and read it back, delete it (a quarter of
the time) and read it back, list a page with `?partial=true` (a tenth of the time). Every
request is timed and tagged with the shards it touched, so latency can be compared on the
shards a fault does not concern. `events` run in the calling thread at their time offsets
(inject a fault, heal it), while the clients run.

What `check` counts as a failure, per request: a 5xx other than 503, a connection error
(reset, refused, broken), a read with the client's token that shows less than the client
wrote (stale read: a missing user, an old name, a deleted user), a request slower than
`limit + 1 s`; at the end (`verify_writes`): an acknowledged write missing on its primary
(lost) or an acknowledged delete whose row is back (resurrected); and the p99 latency of
requests that touched only healthy shards above 1.5 times the fault-free baseline's.
A 503 is an honest answer, never a failure: writes it left uncertain are not checked.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg
import requests

from shards.routing import shard_for_email, shard_for_user_id

TOKEN = "X-Consistency-Token"
DELETED = object()  # expected state of a user whose delete was acknowledged


@dataclass(frozen=True)
class Sample:
    kind: str  # create | get | update | delete | list
    status: int  # 0: no HTTP answer (connection error)
    seconds: float
    shards: frozenset[int]  # touched; all shards for lists, unknown ids count as all
    code: str = ""  # the error body's code (shard_unavailable, server_busy, ...)
    at: float = 0.0  # when it was sent (time.monotonic())


@dataclass
class WorkloadReport:
    seconds: float
    shard_count: int
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # stale reads, 500s, resets
    # Acknowledged state of every user: its last acknowledged name, or DELETED.
    expected: dict[str, object] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)  # a write answered 503: not checked
    lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    verified: bool = False
    started: float = 0.0  # time.monotonic() at the start

    def slowest(self, avoiding: Iterable[int] = (), count: int = 10) -> list[tuple]:
        """(offset from the start, seconds, kind, status) of the slowest requests: where
        in the run the tail of the latency lies."""
        avoid = set(avoiding)
        ranked = sorted(
            (s for s in self.samples if s.status and not (s.shards & avoid)),
            key=lambda s: -s.seconds,
        )
        return [
            (round(s.at - self.started, 2), round(s.seconds, 3), s.kind, s.status)
            for s in ranked[:count]
        ]

    def latencies(self, avoiding: Iterable[int] = ()) -> list[float]:
        avoid = set(avoiding)
        return sorted(s.seconds for s in self.samples if s.status and not (s.shards & avoid))

    def p99(self, avoiding: Iterable[int] = ()) -> float:
        values = self.latencies(avoiding)
        return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0

    def count(self, predicate: Callable[[Sample], bool]) -> int:
        return sum(1 for s in self.samples if predicate(s))

    def summary(self, faulty: Iterable[int] = ()) -> dict:
        faulty = set(faulty)
        return {
            "requests": len(self.samples),
            "rps": round(len(self.samples) / self.seconds, 1),
            "status_503": self.count(lambda s: s.status == 503),
            "server_busy": self.count(lambda s: s.code == "server_busy"),
            "status_5xx_other": self.count(lambda s: s.status >= 500 and s.status != 503),
            "connection_errors": self.count(lambda s: s.status == 0),
            "max_seconds": round(max((s.seconds for s in self.samples), default=0.0), 3),
            "healthy_p99_seconds": round(self.p99(avoiding=faulty), 4),
            "acknowledged_users": len(self.expected),
            "lost_writes": len(self.lost),
            "resurrected_deletes": len(self.resurrected),
            "stale_reads": sum(1 for p in self.problems if p.startswith("stale")),
        }


class _Client:
    def __init__(self, base_url: str, report: WorkloadReport, lock: threading.Lock) -> None:
        self.base = f"{base_url}/api/v1/users"
        self.report, self.lock = report, lock
        self.session = requests.Session()
        self.token: str | None = None
        self.rng = random.Random()
        self.n = report.shard_count
        self.live: list[str] = []  # this client's users not deleted

    def _call(self, kind: str, method: str, url: str, shards: frozenset[int], **kw):
        headers = {TOKEN: self.token} if self.token else {}
        started = time.monotonic()
        try:
            r = self.session.request(method, url, headers=headers, timeout=30, **kw)
        except requests.RequestException as exc:
            self._record(Sample(kind, 0, time.monotonic() - started, shards, at=started))
            self._problem(f"connection error on {kind}: {type(exc).__name__}")
            return None
        elapsed = time.monotonic() - started
        code = ""
        if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application"):
            body = r.json()
            code = body.get("code", "")
            # A failed create's user shard is not known beforehand: the 503 names it.
            named = (body.get("fields") or {}).get("shards") or []
            shards |= frozenset(int(name.rsplit("-", 1)[1]) for name in named)
        if kind == "create" and r.status_code == 201:
            shards = frozenset({shard_for_user_id(r.json()["id"], self.n)}) | shards
        self._record(Sample(kind, r.status_code, elapsed, shards, code, started))
        if r.status_code >= 500 and r.status_code != 503:
            self._problem(f"{r.status_code} on {kind}: {r.text[:200]}")
        if TOKEN in r.headers:
            self.token = r.headers[TOKEN]
        return r

    def _record(self, sample: Sample) -> None:
        with self.lock:
            self.report.samples.append(sample)

    def _problem(self, text: str) -> None:
        with self.lock:
            self.report.problems.append(text)

    def _expect(self, user_id: str, state: object) -> None:
        with self.lock:
            self.report.expected[user_id] = state

    def _uncertain(self, user_id: str) -> None:
        with self.lock:
            self.report.uncertain.add(user_id)

    def _read_back(self, user_id: str, state: object) -> None:
        shard = frozenset({shard_for_user_id(user_id, self.n)})
        r = self._call("get", "GET", f"{self.base}/{user_id}", shard)
        if r is None or r.status_code == 503:
            return  # unavailable is honest; only a wrong answer is stale
        if state is DELETED:
            if r.status_code != 404:
                self._problem(f"stale read: deleted {user_id} answered {r.status_code}")
        elif r.status_code != 200:
            self._problem(f"stale read: {user_id} answered {r.status_code}")
        elif r.json()["name"] != state:
            self._problem(f"stale read: {user_id} is {r.json()['name']!r}, not {state!r}")

    def _read_without_token(self, user_id: str) -> None:
        """Another reader of an older user: served by the replica when it is usable, so
        a replica fault is felt. It may see an older name, never no user."""
        shard = frozenset({shard_for_user_id(user_id, self.n)})
        started = time.monotonic()
        try:
            r = self.session.get(f"{self.base}/{user_id}", timeout=30)
        except requests.RequestException as exc:
            self._record(Sample("get", 0, time.monotonic() - started, shard, at=started))
            self._problem(f"connection error on get: {type(exc).__name__}")
            return
        self._record(Sample("get", r.status_code, time.monotonic() - started, shard, at=started))
        if r.status_code >= 500 and r.status_code != 503:
            self._problem(f"{r.status_code} on get: {r.text[:200]}")
        elif r.status_code == 404:
            self._problem(f"stale read: {user_id} not found without a token")

    def one_round(self) -> None:
        email = f"w{uuid.uuid4().hex[:12]}@example.com"
        all_shards = frozenset(range(self.n))
        email_shard = frozenset({shard_for_email(email, self.n)})
        r = self._call(
            "create", "POST", f"{self.base}/", email_shard, json={"name": "A", "email": email}
        )
        if r is not None and self.rng.random() < 0.1:
            self._call("list", "GET", f"{self.base}/?partial=true&limit=20", all_shards)
        if self.live:
            self._read_without_token(self.rng.choice(self.live))
        if r is None or r.status_code != 201:
            return
        user_id = r.json()["id"]
        shard = frozenset({shard_for_user_id(user_id, self.n)})
        self._expect(user_id, "A")
        self.live.append(user_id)
        self._read_back(user_id, "A")
        if self.rng.random() < 0.5:
            r = self._call("update", "PUT", f"{self.base}/{user_id}", shard, json={"name": "B"})
            if r is not None and r.status_code == 200:
                self._expect(user_id, "B")
                self._read_back(user_id, "B")
            else:
                self._uncertain(user_id)
        if self.rng.random() < 0.25:
            # Delete touches the email's shard too (the lookup row is released).
            r = self._call("delete", "DELETE", f"{self.base}/{user_id}", shard | email_shard)
            self.live.remove(user_id)
            if r is not None and r.status_code == 204:
                self._expect(user_id, DELETED)
                self._read_back(user_id, DELETED)
            else:
                self._uncertain(user_id)


def run_workload(
    base_url: str,
    seconds: float,
    *,
    clients: int = 4,
    shards: int = 3,
    events: Iterable[tuple[float, Callable[[], object]]] = (),
) -> WorkloadReport:
    """Run `clients` API clients for `seconds`; call each event at its offset meanwhile."""
    report = WorkloadReport(seconds=seconds, shard_count=shards, started=time.monotonic())
    lock = threading.Lock()
    stop = threading.Event()

    def loop() -> None:
        client = _Client(base_url, report, lock)
        while not stop.is_set():
            client.one_round()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for at, event in sorted(events, key=lambda e: e[0]):
        time.sleep(max(0.0, started + at - time.monotonic()))
        event()
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    report.seconds = time.monotonic() - started
    return report


def merged(*reports: WorkloadReport) -> WorkloadReport:
    """One report of several runs' requests: a baseline taken before and after a fault run
    spans the machine's load during it (on a shared machine it drifts within seconds)."""
    out = WorkloadReport(seconds=sum(r.seconds for r in reports), shard_count=0)
    for report in reports:
        out.shard_count = report.shard_count
        out.samples += report.samples
        out.problems += report.problems
        out.lost += report.lost
        out.resurrected += report.resurrected
    out.verified = all(r.verified for r in reports)
    return out


def verify_writes(report: WorkloadReport, primary: Callable[[int], psycopg.Connection]) -> None:
    """Compare every acknowledged user with its primary (after the cluster is whole)."""
    by_shard: dict[int, list[str]] = {}
    for user_id in report.expected:
        by_shard.setdefault(shard_for_user_id(user_id, report.shard_count), []).append(user_id)
    for shard, ids in by_shard.items():
        with primary(shard) as conn:
            rows = conn.execute(
                "SELECT id::text, name FROM users WHERE id = ANY(%s::uuid[])", [ids]
            ).fetchall()
        names = dict(rows)
        for user_id in ids:
            if user_id in report.uncertain:
                continue
            want = report.expected[user_id]
            if want is DELETED and user_id in names:
                report.resurrected.append(user_id)
            elif want is not DELETED and names.get(user_id) != want:
                report.lost.append(user_id)
    report.verified = True


def check(
    report: WorkloadReport,
    *,
    limit: float,
    baseline: WorkloadReport | None = None,
    faulty: Iterable[int] = (),
    p99_factor: float = 1.5,
) -> list[str]:
    """Every failure of the scenario, one line each (empty: it passed)."""
    faulty = set(faulty)
    failures = list(dict.fromkeys(report.problems))  # stale reads, 5xx, connection errors
    if not report.samples:
        failures.append("no request was made")
    if not report.verified:
        failures.append("writes were not verified (call verify_writes)")
    failures += [f"lost acknowledged write: {u}" for u in report.lost]
    failures += [f"resurrected delete: {u}" for u in report.resurrected]
    slow = [s for s in report.samples if s.seconds > limit + 1.0]
    failures += [f"{s.kind} took {s.seconds:.2f}s (status {s.status})" for s in slow]
    if baseline is not None:
        healthy, before = report.p99(avoiding=faulty), baseline.p99(avoiding=faulty)
        if healthy > p99_factor * before:
            failures.append(
                f"healthy-shard p99 {healthy * 1000:.1f} ms > {p99_factor} x baseline "
                f"{before * 1000:.1f} ms"
            )
    return failures

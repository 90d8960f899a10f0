"""API clients that run while slots move between shards, and the checks of what they saw.

    load = Workload(base_url, seeded=seeded, clients=8).start()
    time.sleep(3); load.mark("move"); ...run the move...; load.mark("moved"); time.sleep(3)
    report = load.stop()
    verify(report, cluster.snapshot())        # every acknowledged write, on the map's shard
    failures(report)                          # stale reads, 5xx, resets, lost, resurrected
    timing(report, "move", "moved")           # write pause and p99 before / during / after

Built on tests/fault_workload.py (its Sample, WorkloadReport and client plumbing), with what
a move must also survive. Each client loops: create a user and read it back with its
token; rename one of its live users, older ones included (they may sit in a moving slot),
and read it back; change one's email (PUT with a new email), read it back and look both
emails up (`?email=`: the new one finds the user, the old one no longer does); delete one
(a few percent of rounds) and read it back (404); read a seeded user without a token (it
must exist, with its email) and look a seeded user up by email. Walkers page through the
whole list with the `next` cursor (100 a page) and check each walk: no id twice, strictly
newest first, and every seeded user present (nobody deletes them).

Problems recorded per request: any 5xx (503 included: a move is not a failure a client
should see), a connection error, a stale read (a read with the client's token showing less
than it wrote), a 4xx on a request about a live user of the client (a moved user answering
404), a lookup that finds the wrong user. A write answered by a 5xx or no answer is
uncertain: its user is not checked against the primaries and not touched again.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import requests

from shards.routing import canonical_email, canonical_user_id, slot_for_key, slot_map
from tests.fault_workload import DELETED, Sample, WorkloadReport, _Client
from tests.reshard_cluster import Snapshot

WRITE_KINDS = frozenset({"create", "update", "email", "delete"})
NO_SHARDS: frozenset[int] = frozenset()
# The slots a move between 5 and 6 shards changes hands (shard 5's under slot_map(6)).
MOVING = frozenset(
    s for s, (a, b) in enumerate(zip(slot_map(5), slot_map(6), strict=True)) if a != b
)


@dataclass
class ReshardReport(WorkloadReport):
    emails: dict[str, str] = field(default_factory=dict)  # last acknowledged email per user
    seeded: dict[str, str] = field(default_factory=dict)  # seeded user id -> email
    marks: dict[str, float] = field(default_factory=dict)  # name -> time.monotonic()
    walks: int = 0
    walk_pages: int = 0
    misplaced: list[str] = field(default_factory=list)  # acknowledged user on another shard
    # (sent at, seconds, kind, status) of writes whose user id or email is in a moving slot.
    moving_writes: list[tuple[float, float, str, int]] = field(default_factory=list)


def _key(value: str) -> str:
    """The routing key of a user id or an email."""
    return canonical_email(value) if "@" in value else canonical_user_id(value)


class _ReshardClient(_Client):
    def __init__(self, base_url: str, report: ReshardReport, lock: threading.Lock) -> None:
        super().__init__(base_url, report, lock)
        self.report: ReshardReport = report
        self.seeded = list(report.seeded.items())
        self.state: dict[str, tuple[str, str]] = {}  # live user -> (name, email)

    # --- plumbing -------------------------------------------------------------------------
    def _send(self, kind: str, method: str, url: str, keys: tuple[str, ...] = (), **kw):
        """One request; `keys` (user ids, emails) tell whether a write touches a moving slot."""
        started = time.monotonic()
        r = self._call(kind, method, url, NO_SHARDS, **kw)
        if r is not None and r.status_code == 503:
            self._problem(f"503 on {kind}: {r.text[:200]}")
        if kind == "create" and r is not None and r.status_code == 201:
            keys = (*keys, r.json()["id"])
        if kind in WRITE_KINDS and any(slot_for_key(_key(k)) in MOVING for k in keys):
            status = 0 if r is None else r.status_code
            with self.lock:
                self.report.moving_writes.append(
                    (started, time.monotonic() - started, kind, status)
                )
        return r

    def _ack(self, user_id: str, name: str, email: str) -> None:
        with self.lock:
            self.report.expected[user_id] = name
            self.report.emails[user_id] = email
        self.state[user_id] = (name, email)

    def _give_up(self, user_id: str) -> None:
        """A write without a clear answer: the user's state is unknown from now on."""
        self._uncertain(user_id)
        self.state.pop(user_id, None)
        if user_id in self.live:
            self.live.remove(user_id)

    def _unexpected(self, kind: str, user_id: str, r) -> None:
        self._problem(f"{kind} of live user {user_id} answered {r.status_code}: {r.text[:200]}")

    # --- reads ----------------------------------------------------------------------------
    def _read_back(self, user_id: str, state: object) -> None:
        r = self._send("get", "GET", f"{self.base}/{user_id}")
        if r is None or r.status_code >= 500:
            return
        if state is DELETED:
            if r.status_code != 404:
                self._problem(f"stale read: deleted {user_id} answered {r.status_code}")
            return
        name, email = state  # type: ignore[misc]
        if r.status_code != 200:
            self._problem(f"stale read: {user_id} answered {r.status_code}")
            return
        got = r.json()
        if (got["name"], got["email"]) != (name, email):
            self._problem(
                f"stale read: {user_id} is {got['name']!r} {got['email']!r}, not {name!r} {email!r}"
            )

    def _lookup(self, email: str) -> list[str] | None:
        r = self._send("lookup", "GET", f"{self.base}/", params={"email": email})
        if r is None or r.status_code >= 500:
            return None
        if r.status_code != 200:
            self._problem(f"lookup of {email} answered {r.status_code}: {r.text[:200]}")
            return None
        return [u["id"] for u in r.json()["results"]]

    def _read_seeded(self) -> None:
        user_id, email = self.rng.choice(self.seeded)
        if self.rng.random() < 0.5:
            started = time.monotonic()
            try:
                r = self.session.get(f"{self.base}/{user_id}", timeout=30)  # no token
            except requests.RequestException as exc:
                self._record(Sample("get", 0, time.monotonic() - started, NO_SHARDS, at=started))
                self._problem(f"connection error on get: {type(exc).__name__}")
                return
            self._record(Sample("get", r.status_code, time.monotonic() - started, NO_SHARDS,
                                at=started))  # fmt: skip
            if r.status_code >= 500:
                self._problem(f"{r.status_code} on get: {r.text[:200]}")
            elif r.status_code != 200:
                self._problem(f"seeded user {user_id} answered {r.status_code}")
            elif r.json()["email"] != email:
                self._problem(f"seeded user {user_id} has email {r.json()['email']!r}")
        else:
            found = self._lookup(email)
            if found is not None and found != [user_id]:
                self._problem(f"lookup of seeded {email} found {found}, not [{user_id}]")

    # --- writes ---------------------------------------------------------------------------
    def _create(self) -> None:
        email = f"r{uuid.uuid4().hex[:14]}@example.com"
        r = self._send(
            "create", "POST", f"{self.base}/", (email,), json={"name": "A", "email": email}
        )
        if r is None or r.status_code >= 500:
            return
        if r.status_code != 201:
            self._problem(f"create answered {r.status_code}: {r.text[:200]}")
            return
        user_id = r.json()["id"]
        self._ack(user_id, "A", email)
        self.live.append(user_id)
        self._read_back(user_id, ("A", email))

    def _rename(self, user_id: str) -> None:
        name = f"N{self.rng.randrange(10**6)}"
        r = self._send("update", "PUT", f"{self.base}/{user_id}", (user_id,), json={"name": name})
        if r is None or r.status_code >= 500:
            self._give_up(user_id)
        elif r.status_code != 200:
            self._unexpected("rename", user_id, r)
            self._give_up(user_id)
        else:
            self._ack(user_id, name, self.state[user_id][1])
            self._read_back(user_id, self.state[user_id])

    def _change_email(self, user_id: str) -> None:
        old = self.state[user_id][1]
        new = f"e{uuid.uuid4().hex[:14]}@example.com"
        keys = (user_id, old, new)
        r = self._send("email", "PUT", f"{self.base}/{user_id}", keys, json={"email": new})
        if r is None or r.status_code >= 500:
            self._give_up(user_id)
            return
        if r.status_code != 200:
            self._unexpected("email change", user_id, r)
            self._give_up(user_id)
            return
        self._ack(user_id, self.state[user_id][0], new)
        self._read_back(user_id, self.state[user_id])
        found = self._lookup(new)
        if found is not None and found != [user_id]:
            self._problem(f"stale read: lookup of new email {new} found {found}, not {user_id}")
        found = self._lookup(old)
        if found is not None and user_id in found:
            self._problem(f"stale read: lookup of old email {old} still finds {user_id}")

    def _delete(self, user_id: str) -> None:
        keys = (user_id, self.state[user_id][1])
        r = self._send("delete", "DELETE", f"{self.base}/{user_id}", keys)
        if r is None or r.status_code >= 500:
            self._give_up(user_id)
            return
        if r.status_code != 204:
            self._unexpected("delete", user_id, r)
            self._give_up(user_id)
            return
        self.live.remove(user_id)
        self.state.pop(user_id)
        with self.lock:
            self.report.expected[user_id] = DELETED
        self._read_back(user_id, DELETED)

    def one_round(self) -> None:
        self._create()
        if self.live:
            roll = self.rng.random()
            target = self.rng.choice(self.live)
            if roll < 0.4:
                self._rename(target)
            elif roll < 0.7:
                self._change_email(target)
            elif roll < 0.8:
                self._delete(target)
        if self.seeded:
            self._read_seeded()


class _Walker(_Client):
    """Pages through the whole list with the cursor and checks the walk."""

    def __init__(self, base_url: str, report: ReshardReport, lock: threading.Lock) -> None:
        super().__init__(base_url, report, lock)
        self.report: ReshardReport = report

    def one_round(self) -> None:
        url: str | None = f"{self.base}/?limit=100"
        seen: set[str] = set()
        last: tuple[str, str] | None = None
        pages = 0
        while url:
            r = self._call("list", "GET", url, NO_SHARDS)
            if r is None or r.status_code != 200:
                if r is not None and r.status_code < 500:
                    self._problem(f"list page answered {r.status_code}: {r.text[:200]}")
                elif r is not None and r.status_code == 503:
                    self._problem(f"503 on list: {r.text[:200]}")
                return  # an unfinished walk proves nothing more
            body = r.json()
            for user in body["results"]:
                key = (user["created_at"], user["id"])
                if user["id"] in seen:
                    self._problem(f"walk: {user['id']} listed twice")
                if last is not None and key >= last:
                    self._problem(f"walk: {key} listed after {last} (not newest first)")
                seen.add(user["id"])
                last = key
            pages += 1
            url = body.get("next")
        missing = [u for u in self.report.seeded if u not in seen]
        if missing:
            self._problem(f"walk: {len(missing)} seeded users not listed, e.g. {missing[:3]}")
        with self.lock:
            self.report.walks += 1
            self.report.walk_pages += pages


class Workload:
    """`clients` API clients and `walkers` list walkers in threads, until `stop()`."""

    def __init__(
        self,
        base_url: str,
        *,
        seeded: dict[str, str],
        clients: int = 8,
        walkers: int = 1,
        shard_count: int = 6,
    ) -> None:
        self.base_url = base_url
        self.report = ReshardReport(seconds=0.0, shard_count=shard_count, seeded=dict(seeded))
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.kinds = [_ReshardClient] * clients + [_Walker] * walkers
        self.threads: list[threading.Thread] = []

    def _loop(self, kind: type[_Client]) -> None:
        client = kind(self.base_url, self.report, self.lock)
        while not self.stopping.is_set():
            try:
                client.one_round()
            except Exception as exc:  # a bug of the harness or an answer it cannot parse
                client._problem(f"client error: {type(exc).__name__}: {exc}")
                time.sleep(0.1)

    def start(self) -> Workload:
        self.report.started = time.monotonic()
        self.threads = [
            threading.Thread(target=self._loop, args=(kind,), daemon=True) for kind in self.kinds
        ]
        for thread in self.threads:
            thread.start()
        return self

    def mark(self, name: str) -> None:
        self.report.marks[name] = time.monotonic()

    def stop(self) -> ReshardReport:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.report.seconds = time.monotonic() - self.report.started
        return self.report


# --- checks ----------------------------------------------------------------------------------
def verify(report: ReshardReport, snap: Snapshot) -> None:
    """Every acknowledged write against the primaries, with the map in force: a live user
    must be on the shard the map names with its last acknowledged name and email (else
    lost; found only elsewhere: misplaced too), a deleted one on no shard (resurrected);
    every seeded user must still be there, unchanged."""
    where = snap.user_shards()
    rows = snap.all_users()
    for user_id, want in report.expected.items():
        if user_id in report.uncertain:
            continue
        if want is DELETED:
            if user_id in where:
                report.resurrected.append(f"{user_id} on {where[user_id]}")
            continue
        owner = snap.owner_of_user(user_id)
        if owner not in where.get(user_id, []):
            report.lost.append(f"{user_id} not on shard {owner} (on {where.get(user_id, [])})")
            if user_id in where:
                report.misplaced.append(user_id)
        elif snap.users[owner][user_id] != (want, report.emails[user_id]):
            report.lost.append(
                f"{user_id} is {snap.users[owner][user_id]}, acknowledged "
                f"{(want, report.emails[user_id])}"
            )
    for user_id, email in report.seeded.items():
        if rows.get(user_id, (None, None))[1] != email:
            report.lost.append(f"seeded {user_id} is {rows.get(user_id)}")
    report.verified = True


def failures(report: ReshardReport, limit: int = 15, allow_503: bool = False) -> list[str]:
    """Everything that went wrong, one line per kind of problem with its count.
    `allow_503`: a 503 is an honest answer here (a move whose command was killed while its
    write fence stood), not a failure; it is still counted in `timing`."""
    out = []
    problems = [p for p in report.problems if not (allow_503 and p.startswith("503 on"))]
    kinds = Counter(p.split(":", 1)[0] for p in problems)
    examples: dict[str, list[str]] = {}
    for p in problems:
        examples.setdefault(p.split(":", 1)[0], []).append(p)
    for kind, count in kinds.most_common():
        shown = list(dict.fromkeys(examples[kind]))[:3]
        out.append(f"{count} x {kind}: " + " | ".join(shown))
    if not report.samples:
        out.append("no request was made")
    if not report.verified:
        out.append("writes were not verified")
    if report.lost:
        out.append(f"{len(report.lost)} lost acknowledged writes: {report.lost[:limit]}")
    if report.resurrected:
        out.append(f"{len(report.resurrected)} resurrected deletes: {report.resurrected[:limit]}")
    return out


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def timing(report: ReshardReport, start: str, end: str) -> dict:
    """Latency before, during and after the window between two marks; the write pause is
    the longest write that overlapped the window."""
    t0, t1 = report.marks[start], report.marks[end]
    before = [s for s in report.samples if s.status and s.at + s.seconds <= t0]
    during = [s for s in report.samples if s.status and s.at < t1 and s.at + s.seconds > t0]
    after = [s for s in report.samples if s.status and s.at >= t1]
    writes = sorted((s for s in during if s.kind in WRITE_KINDS), key=lambda s: -s.seconds)
    moving = [
        sec for at, sec, _k, status in report.moving_writes if status and t0 < at + sec and at < t1
    ]
    statuses = Counter(s.status for s in report.samples)
    # Where the errors fell: 5xx and connection errors per second from the move's start.
    errors = Counter(
        math.floor(s.at - t0) for s in report.samples if not s.status or s.status >= 500
    )
    wall = time.time() - (time.monotonic() - t0)
    return {
        "move_started_utc": time.strftime("%H:%M:%S", time.gmtime(wall)),
        "move_seconds": round(t1 - t0, 2),
        "requests": len(report.samples),
        "requests_during": len(during),
        "statuses": dict(sorted(statuses.items())),
        "write_pause_seconds": round(writes[0].seconds, 3) if writes else None,
        "write_pause_moving_slots_seconds": round(max(moving, default=0.0), 3),
        "moving_slot_writes_during": len(moving),
        "slowest_writes_during": [
            (round(s.at - t0, 2), round(s.seconds, 3), s.kind, s.status) for s in writes[:5]
        ],
        "p99_before_ms": round(_p99([s.seconds for s in before]) * 1000, 1),
        "p99_during_ms": round(_p99([s.seconds for s in during]) * 1000, 1),
        "p99_after_ms": round(_p99([s.seconds for s in after]) * 1000, 1),
        "write_p99_before_ms": round(
            _p99([s.seconds for s in before if s.kind in WRITE_KINDS]) * 1000, 1
        ),
        "write_p99_during_ms": round(_p99([s.seconds for s in writes]) * 1000, 1),
        "errors_by_second_from_move_start": dict(sorted(errors.items())),
        "walks": report.walks,
        "walk_pages": report.walk_pages,
        "acknowledged_users": sum(1 for v in report.expected.values() if v is not DELETED),
        "acknowledged_deletes": sum(1 for v in report.expected.values() if v is DELETED),
        "uncertain": len(report.uncertain),
    }

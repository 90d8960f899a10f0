"""A small steady load for restart and stop tests: what every request became, and gaps.

Threads with keep-alive sessions create users (writes) and read them back, recording each
request's outcome: an HTTP status, or how the connection failed. "refused" means the
connection was refused before anything was sent; "reset" and "closed" mean a request was
sent and no answer came (a reset, or a close without a response). Acknowledged writes
(201) are checked afterwards: each must read back."""

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import requests

TOKEN = "X-Consistency-Token"


def classify(exc: BaseException) -> str:
    """refused, reset, closed, timeout or other, from the exception chain of requests."""
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or item in seen:
            continue
        seen.append(item)
        stack.extend([item.__cause__, item.__context__])
        stack.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    names = {type(item).__name__ for item in seen}
    if "ConnectionRefusedError" in names:
        return "refused"
    if "ConnectionResetError" in names:  # RemoteDisconnected, a subclass, is "closed"
        return "reset"
    if "RemoteDisconnected" in names:
        return "closed"
    if names & {"ReadTimeout", "ConnectTimeout", "TimeoutError", "timeout"}:
        return "timeout"
    return "other:" + type(exc).__name__


@dataclass
class Load:
    base_url: str
    threads: int = 10
    timeout: float = 30.0
    outcomes: Counter = field(default_factory=Counter)
    answered_at: list[float] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)  # (user id, token)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.slowest = (0.0, 0.0)  # (seconds, when it began): the slowest answer or failure
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]

    def _record(self, began: float, outcome: str | int, detail: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            self.outcomes[outcome] += 1
            self.slowest = max(self.slowest, (now - began, began))
            if isinstance(outcome, int):
                self.answered_at.append(now)
            elif detail and len(self.errors) < 20:
                self.errors.append(detail)

    def _run(self) -> None:
        session = requests.Session()
        mine: list[tuple[str, str]] = []
        n = 0
        while not self._stop.is_set():
            n += 1
            began = time.monotonic()
            try:
                if n % 3 == 1 or not mine:  # one write for two reads
                    email = f"load-{uuid.uuid4().hex[:12]}@example.com"
                    r = session.post(
                        f"{self.base_url}/api/v1/users/",
                        json={"name": "Load", "email": email},
                        timeout=self.timeout,
                    )
                    if r.status_code == 201:
                        mine.append((r.json()["id"], r.headers[TOKEN]))
                        with self._lock:
                            self.writes.append(mine[-1])
                else:
                    user_id, token = mine[n % len(mine)]
                    r = session.get(
                        f"{self.base_url}/api/v1/users/{user_id}",
                        headers={TOKEN: token},
                        timeout=self.timeout,
                    )
                self._record(began, r.status_code)
            except requests.RequestException as exc:
                self._record(began, classify(exc), repr(exc)[:300])
                session.close()
                session = requests.Session()
                time.sleep(0.01)

    def start(self) -> "Load":
        self.started = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> "Load":
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        self.stopped = time.monotonic()
        return self

    def longest_gap(self, start: float | None = None, end: float | None = None) -> float:
        """Longest stretch, in seconds, with no answer at all, from the first answer (or
        `start`) to the end (or the last answer)."""
        times = sorted(self.answered_at)
        start = times[0] if start is None else start
        end = times[-1] if end is None else end
        points = [start, *(t for t in times if start <= t <= end), end]
        gap, self.longest_gap_began = max(
            (b - a, a - self.started) for a, b in zip(points, points[1:], strict=False)
        )
        return gap

    def count(self, *outcomes: str | int) -> int:
        return sum(self.outcomes[o] for o in outcomes)

    def server_errors(self) -> int:
        return sum(n for o, n in self.outcomes.items() if isinstance(o, int) and o >= 500)

    def lost_writes(self, base_url: str | None = None) -> list[str]:
        """Acknowledged creates that do not read back (with their consistency token)."""
        lost = []
        with requests.Session() as session:
            for user_id, token in self.writes:
                r = session.get(
                    f"{base_url or self.base_url}/api/v1/users/{user_id}", headers={TOKEN: token}
                )
                if r.status_code != 200:
                    lost.append(user_id)
        return lost

    def summary(self) -> str:
        total = sum(self.outcomes.values())
        return (
            f"{total} requests, outcomes {dict(self.outcomes)}, "
            f"{len(self.writes)} acknowledged writes, slowest {self.slowest[0] * 1000:.0f} ms, "
            f"longest gap {self.longest_gap() * 1000:.0f} ms "
            f"(from {self.longest_gap_began:.2f} s after the start)"
        )


def _run_in_child(base_url: str, threads: int, started, stop, results) -> None:
    load = Load(base_url, threads=threads).start()
    started.put(True)
    stop.wait()
    load.stop()
    results.put(
        (
            load.started,
            dict(load.outcomes),
            load.answered_at,
            load.writes,
            load.errors,
            load.slowest,
        )
    )


class LoadGroup:
    """Load from several processes: one process's threads share a GIL and a CPU share, so
    on a busy machine they all stall together, which would look like a server's gap."""

    def __init__(self, base_url: str, processes: int = 3, threads: int = 4) -> None:
        context = multiprocessing.get_context("spawn")
        self.base_url = base_url
        self._started = context.Queue()
        self._stop = context.Event()
        self._results = context.Queue()
        self._children = [
            context.Process(
                target=_run_in_child,
                args=(base_url, threads, self._started, self._stop, self._results),
            )
            for _ in range(processes)
        ]

    def start(self) -> "LoadGroup":
        for child in self._children:
            child.start()
        for _ in self._children:
            self._started.get(timeout=60)
        return self

    def stop(self) -> Load:
        """Stop every process; their records merged in one Load."""
        self._stop.set()
        merged = Load(self.base_url, threads=0)
        merged.started = float("inf")
        for _ in self._children:
            started, outcomes, answered_at, writes, errors, slowest = self._results.get(timeout=120)
            merged.started = min(merged.started, started)
            merged.slowest = max(merged.slowest, slowest)
            merged.outcomes.update(outcomes)
            merged.answered_at.extend(answered_at)
            merged.writes.extend(writes)
            merged.errors.extend(errors)
        for child in self._children:
            child.join(timeout=30)
        merged.stopped = time.monotonic()
        return merged

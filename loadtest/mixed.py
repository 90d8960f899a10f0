"""The mixed workload: what a population of app clients does with the users API.

Each simulated user creates a few users of its own, reads them back (by id and by email),
renames them with PUT or PATCH, deletes them, pages through the list (first page, then its
`next` cursor) and reads ids it saw in a page. Reads of its own users must return exactly
what it wrote (it sends its consistency token); reads of sampled ids accept 404 (their owner
may have deleted them). `mix(reads=R)` sets the share of read requests, in percent.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

import gevent

from loadtest.common import USERS, ApiUser, CheckFailed, next_query

# How many of its own users one client keeps alive: bounds the rows a run leaves behind.
MAX_OWN = 5
PAGE_LIMIT = 20

LIST_FIRST = "GET /api/v1/users/?limit&offset"
LIST_NEXT = "GET /api/v1/users/?cursor"


class MixedUser(ApiUser):
    """Base of the mixed scenarios; a scenario sets `wait_time` and `tasks = mix(...)`."""

    abstract = True

    def on_start(self) -> None:
        # Reads need real ids: sample some from the API before the first task.
        with contextlib.suppress(CheckFailed):  # already counted as a failure
            self.list_first()

    # -- reads ----------------------------------------------------------------------------

    def read_own(self) -> None:
        user_id = self.any_own()
        if user_id is None:
            self.read_sampled()  # a read stays a read: the read share is what was asked
            return
        self.get_own(user_id)

    def read_sampled(self) -> None:
        if not self.sampled:
            self.list_first()
            return
        self.get_sampled(random.choice(self.sampled))

    def list_first(self) -> None:
        page = self.list_page(f"{USERS}?limit={PAGE_LIMIT}&offset=0", PAGE_LIMIT, LIST_FIRST)
        self.next_page = next_query(page["next"]) if page["next"] else None

    def list_next(self) -> None:
        if self.next_page is None:
            self.list_first()
            return
        page = self.list_page(self.next_page, PAGE_LIMIT, LIST_NEXT)
        self.next_page = next_query(page["next"]) if page["next"] else None

    def find_by_email(self) -> None:
        user_id = self.any_own()
        if user_id is None:
            self.read_sampled()
            return
        self.find_own_by_email(user_id)

    def read_deleted(self) -> None:
        if not self.gone:
            self.read_own()
            return
        self.get_gone(random.choice(self.gone))

    # -- writes ---------------------------------------------------------------------------

    def create(self) -> None:
        if len(self.mine) >= MAX_OWN:
            self.delete_own(next(iter(self.mine)))  # the oldest: dicts keep insertion order
        self.create_user()

    def update(self) -> None:
        user_id = self.any_own()
        if user_id is None:
            self.create()
            return
        self.update_own(user_id, method=random.choice(("PUT", "PATCH")))

    def delete(self) -> None:
        user_id = self.any_own()
        if user_id is None:
            self.create()
            return
        self.delete_own(user_id)


def paced(pacing: float) -> Callable[[ApiUser], float]:
    """A wait_time starting one task every `pacing` seconds per user, whatever the tasks'
    duration (like locust's constant_pacing), but with a random phase per user.

    Locust spawns each second's users together, and constant_pacing keeps every user on the
    phase of its spawn: users spawned together then fire in the same instant every period,
    and the latency measured is that of the burst's queue, not the API's (60 users at
    1 task/s showed 60 ms instead of 5 ms). A late task shifts the schedule instead of
    being caught up in a burst."""

    def wait_time(user: ApiUser) -> float:
        now = time.perf_counter()
        last = getattr(user, "_next_task_at", None)
        first = now + random.uniform(0, pacing)  # a random phase, unless spread_first_task set it
        planned = first if last is None else max(last + pacing, now)
        user._next_task_at = planned
        return planned - now

    return wait_time


def spread_first_task(user: ApiUser, pacing: float) -> None:
    """From on_start: wait a random part of one pacing period before the first task (which
    locust runs right after on_start), and start the `paced` schedule from there."""
    gevent.sleep(random.uniform(0, pacing))
    user._next_task_at = time.perf_counter()


# Relative weights inside each family; mix() scales them to the wanted read share.
READS: dict[Callable, int] = {
    MixedUser.read_own: 30,
    MixedUser.read_sampled: 20,
    MixedUser.list_first: 20,
    MixedUser.list_next: 10,
    MixedUser.find_by_email: 10,
    MixedUser.read_deleted: 5,
    ApiUser.health: 5,
}
WRITES: dict[Callable, int] = {
    MixedUser.create: 40,
    MixedUser.update: 40,
    MixedUser.delete: 20,
}


def mix(*, reads: int, read_weights: dict[Callable, int] | None = None) -> dict[Callable, int]:
    """Task weights (out of ~1000) giving `reads` percent read tasks, the rest writes.
    `read_weights` replaces the relative weights of the read tasks (their sum is free)."""
    if not 0 <= reads <= 100:
        raise ValueError("reads is a percentage")
    family = read_weights or READS
    total = sum(family.values())
    weights = {fn: round(reads * w * 10 / total) for fn, w in family.items()}
    weights.update({fn: round((100 - reads) * w / 10) for fn, w in WRITES.items()})
    return {_swallow(fn): w for fn, w in weights.items() if w > 0}


def _swallow(fn: Callable) -> Callable:
    """A task that ends quietly on CheckFailed: the failure is already in the statistics,
    and the user goes on with its next task instead of logging a traceback."""

    def run(user: MixedUser) -> None:
        with contextlib.suppress(CheckFailed):
            fn(user)

    run.__name__ = fn.__name__
    return run

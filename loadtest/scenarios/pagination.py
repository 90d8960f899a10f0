"""pagination: walk the cursor pages deep, while others write (make loadtest-pagination).

Each of 10 users keeps 5 "marker" users of its own. Per task it renames one marker, then walks
the list from the first page through `next` cursors, up to MAX_PAGES deep or to the end, with
a random page size. Across the whole walk it checks that:
- every page is well formed and at most `limit` long;
- rows are strictly newest first by (created_at, id), also across page boundaries;
- no row appears twice;
- each marker appears, with its latest name, once the walk has passed its place in the order
  (markers were committed before the walk began and the walk sends the consistency token, so
  a missing or stale marker is a consistency violation).
Then it deletes its oldest marker and creates a new one, so walks run under concurrent inserts
and deletes, which keyset cursors must tolerate without skipping or repeating rows.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

from locust import between, task

from loadtest.checks import Walk
from loadtest.common import USERS, ApiUser, CheckFailed, next_query

MARKERS = 5
MAX_PAGES = 40
PAGE_SIZES = (10, 20, 50, 100)
FIRST = "GET /api/v1/users/?limit (walk: first page)"
DEEP = "GET /api/v1/users/?cursor (walk: deeper page)"


class PaginationUser(ApiUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        with contextlib.suppress(CheckFailed):
            for _ in range(MARKERS):
                self.create_user()

    @task
    def walk(self) -> None:
        with contextlib.suppress(CheckFailed):
            if self.mine:
                self.update_own(random.choice(list(self.mine)))
            self.walk_pages()
            self.rotate_markers()

    def walk_pages(self) -> None:
        limit = random.choice(PAGE_SIZES)
        walk = Walk(self.mine)
        path, name = f"{USERS}?limit={limit}", FIRST
        for _ in range(MAX_PAGES):

            def check(status: int, body: Any, walk: Walk = walk, limit: int = limit) -> str | None:
                if body["next"] is not None and f"limit={limit}" not in body["next"]:
                    return "next link does not keep the page size"
                return walk.take(body)

            body = self.list_page(path, limit, name, check)
            if body["next"] is None:
                return
            path, name = next_query(body["next"]) or path, DEEP

    def rotate_markers(self) -> None:
        if len(self.mine) >= MARKERS:
            self.delete_own(next(iter(self.mine)))
        self.create_user()

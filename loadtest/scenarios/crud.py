"""crud: the whole life of a user, step by step, every answer checked (make loadtest-crud).

Each of 20 users repeats: 1 create -> 2 get -> 3 list (walk pages until the new user is found
or passed) and find by email -> 4 update (PUT, name only) -> 5 get -> 6 delete -> 7 get-404,
with 1-2 s between sequences but no pause between steps: a read right after a write is what
catches a lagging replica.
Every step sends the latest consistency token, so every read must show the latest write:
a 404 after the create, an old name after the update or a 200 after the delete is a
consistency violation, counted as a failure. A sequence stops at its first failure (and
deletes its user, to leave nothing behind).
"""

from __future__ import annotations

import contextlib
from typing import Any

from locust import between, task

from loadtest.common import CONSISTENCY, USERS, ApiUser, CheckFailed, next_query, sort_key

PAGE_LIMIT = 50
# The new user is among the newest rows: a few pages always reach it unless thousands of
# rows are created during the walk, which this scenario does not do.
MAX_WALK_PAGES = 20


class CrudUser(ApiUser):
    wait_time = between(1, 2)

    @task
    def lifecycle(self) -> None:
        user_id = None
        try:
            user_id = self.create_user(name="1 create: POST /api/v1/users/")["id"]
            self.get_own(user_id, name="2 get: GET /api/v1/users/[id]")
            self.walk_to(user_id)
            self.find_own_by_email(user_id, name="3 list: GET /api/v1/users/?email")
            self.update_own(user_id, method="PUT", name="4 update: PUT /api/v1/users/[id]")
            self.get_own(user_id, name="5 get: GET /api/v1/users/[id] (updated)")
            self.delete_own(user_id, name="6 delete: DELETE /api/v1/users/[id]")
            self.get_gone(user_id, name="7 get-404: GET /api/v1/users/[id] (deleted)")
        except CheckFailed:
            if user_id in self.mine:
                with contextlib.suppress(CheckFailed):
                    self.delete_own(user_id, name="cleanup: DELETE /api/v1/users/[id]")

    def walk_to(self, user_id: str) -> None:
        """Page through the list, newest first, until the new user shows up; passing its
        place in the order without seeing it means the list lost a committed row."""
        known = self.mine[user_id]
        target = sort_key(known)
        path = f"{USERS}?limit={PAGE_LIMIT}"
        for page in range(1, MAX_WALK_PAGES + 1):
            state: dict[str, Any] = {}

            def check(
                status: int, body: Any, state: dict = state, last: bool = page == MAX_WALK_PAGES
            ) -> str | None:
                rows = body["results"]
                match = next((row for row in rows if row["id"] == user_id), None)
                if match is not None:
                    state["found"] = True
                    return None if match == known else f"{CONSISTENCY}: list shows a stale row"
                if (rows and sort_key(rows[-1]) < target) or body["next"] is None:
                    return f"{CONSISTENCY}: list walk passed the new user without showing it"
                if last:
                    # Not a violation, but the step proved nothing: too many newer rows.
                    return f"new user not reached within {MAX_WALK_PAGES} pages"
                return None

            body = self.list_page(path, PAGE_LIMIT, "3 list: GET /api/v1/users/?limit", check)
            if state.get("found"):
                return
            path = next_query(body["next"]) or path

"""What every scenario shares: a locust user that talks to the users API like a careful client.

`ApiUser` sends back the latest `X-Consistency-Token` it received, checks the status and the
body of every response, and remembers what it wrote so that a later read can prove it is not
stale. A check that fails marks the request as failed in locust's statistics; failures whose
message contains "consistency violation" are also counted apart by the runner
(loadtest/run.py), so a stale read or a row missing from a list walk never hides among
ordinary errors. The checks themselves are plain functions in loadtest/checks.py.

Failure messages carry no ids (locust groups failures by message); details go to the log.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from loadtest.checks import (
    CONSISTENCY,
    USERS,
    error_problem,
    next_query,
    page_problem,
    parse_time,
    sort_key,
    user_problem,
)

__all__ = ["CONSISTENCY", "USERS", "ApiUser", "CheckFailed", "next_query", "sort_key"]

TOKEN_HEADER = "X-Consistency-Token"
# An API with API_AUTH=required is load-tested with a key: API_KEY=<key> make loadtest-...
API_KEY = os.environ.get("API_KEY", "")

log = logging.getLogger("loadtest")

# A check gets (status, parsed body) and returns None when they are right, or a short,
# id-free reason when they are not.
Check = Callable[[int, Any], str | None]


class CheckFailed(Exception):
    """A response (or a sequence of them) broke the contract; the request is already marked."""


def new_email() -> str:
    # uuid4 in the local part: creates from thousands of users never collide.
    return f"lt-{uuid.uuid4().hex}@loadtest.example.com"


def new_name() -> str:
    return f"Load Test {uuid.uuid4().hex[:8]}"


class ApiUser(FastHttpUser):
    """A client of the users API that never forgets its consistency token.

    `mine` holds, per id, the last representation this user wrote (create or update
    response); only its owner changes a user, so a read of it with the token must equal it.
    `sampled` holds ids read from list pages (others may delete them: 404 is then fine); it
    is shared by the users of one locust process, so that 10,000 users do not each need a
    list page (which queries every shard) before their first read by id.
    """

    abstract = True
    # One simulated user = one client = one keep-alive connection, like a real app.
    concurrency = 1
    network_timeout = 60.0
    connection_timeout = 60.0
    sampled: deque[str] = deque(maxlen=1024)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.token: str | None = None
        self.mine: dict[str, dict] = {}
        self.gone: deque[str] = deque(maxlen=16)
        self.next_page: str | None = None
        # Headers of the response being checked (case-insensitive), for checks that look
        # beyond the body.
        self.response_headers: Any = None

    # -- plumbing -------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: int | tuple[int, ...],
        json: dict | None = None,
        check: Check | None = None,
    ) -> tuple[int, Any]:
        """Send one request with the token, check status and body, keep the newest token.
        Returns (status, parsed body). Raises CheckFailed after marking the failure."""
        expected = (expect,) if isinstance(expect, int) else expect
        headers = {"Accept": "application/json"}
        if API_KEY:
            headers["Authorization"] = f"Bearer {API_KEY}"
        if self.token:
            headers[TOKEN_HEADER] = self.token
        with self.client.request(
            method, path, name=name, headers=headers, json=json, catch_response=True
        ) as response:
            status, body, problem = self._inspect(response, expected, check)
            if problem:
                response.failure(problem)
                log.warning("%s %s -> %s: %s; body: %.300s", method, path, status, problem, body)
                raise CheckFailed(problem)
            response.success()
        return status, body

    def _inspect(
        self, response: ResponseContextManager, expected: tuple[int, ...], check: Check | None
    ) -> tuple[int, Any, str | None]:
        status = response.status_code
        if status == 0:
            error = getattr(response, "error", None)
            return status, None, f"connection error: {type(error).__name__}"
        self.response_headers = response.headers
        token = self.header(TOKEN_HEADER)
        if token:
            self.token = token
        body: Any = None
        if response.content:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                return status, None, f"HTTP {status} with a body that is not JSON"
        if status not in expected:
            code = body.get("code") if isinstance(body, dict) else None
            return status, body, f"HTTP {status} ({code}), expected {'/'.join(map(str, expected))}"
        return status, body, check(status, body) if check else None

    def header(self, name: str) -> str | None:
        """A header of the response being checked, whatever the case of its name."""
        value = self.response_headers.get(name) if self.response_headers else None
        return value if isinstance(value, str) or value is None else ", ".join(value)

    # -- operations used by the scenarios --------------------------------------------------

    def create_user(self, name: str = "POST /api/v1/users/") -> dict:
        sent = {"name": new_name(), "email": new_email()}

        def check(status: int, body: Any) -> str | None:
            if problem := user_problem(body):
                return problem
            if body["name"] != sent["name"] or body["email"] != sent["email"]:
                return "created user does not echo the name and email sent"
            if body["created_at"] != body["updated_at"]:
                return "new user has updated_at different from created_at"
            if not (self.header("Location") or "").endswith(f"/api/v1/users/{body['id']}"):
                return "create answered without the new user's Location"
            if not self.header(TOKEN_HEADER):
                return "create answered without a consistency token"
            return None

        _, body = self.call("POST", USERS, name=name, expect=201, json=sent, check=check)
        self.mine[body["id"]] = body
        return body

    def get_own(self, user_id: str, name: str = "GET /api/v1/users/[id]") -> dict:
        """Read a user this client wrote: anything but exactly what it wrote is stale."""
        known = self.mine[user_id]

        def check(status: int, body: Any) -> str | None:
            if status == 404:
                return f"{CONSISTENCY}: stale read (own user missing, 404 with token)"
            if problem := user_problem(body):
                return problem
            if body != known:
                return f"{CONSISTENCY}: stale read (user differs from what this client wrote)"
            return None

        _, body = self.call("GET", USERS + user_id, name=name, expect=(200, 404), check=check)
        return body

    def get_sampled(self, user_id: str, name: str = "GET /api/v1/users/[id]") -> None:
        """Read an id seen in a list: another client may have deleted it since (404 is fine)."""

        def check(status: int, body: Any) -> str | None:
            if status == 404:
                return error_problem(body, "not_found")
            if problem := user_problem(body):
                return problem
            return None if body["id"] == user_id else "user id differs from the id asked for"

        status, _ = self.call("GET", USERS + user_id, name=name, expect=(200, 404), check=check)
        if status == 404 and user_id in self.sampled:
            self.sampled.remove(user_id)

    def get_gone(self, user_id: str, name: str = "GET /api/v1/users/[id] (deleted)") -> None:
        """Read a user this client deleted: with the token it must be 404."""

        def check(status: int, body: Any) -> str | None:
            if status == 200:
                return f"{CONSISTENCY}: deleted user still readable"
            return error_problem(body, "not_found")

        self.call("GET", USERS + user_id, name=name, expect=(200, 404), check=check)

    def update_own(self, user_id: str, method: str = "PATCH", name: str | None = None) -> dict:
        """Change the name only: the answer must keep id, email, created_at and move
        updated_at forward (the seed's PUT wiped fields and returned a stale updated_at)."""
        before = self.mine[user_id]
        sent = {"name": new_name()}

        def check(status: int, body: Any) -> str | None:
            if problem := user_problem(body):
                return problem
            if body["name"] != sent["name"]:
                return "update did not apply the new name"
            if any(body[k] != before[k] for k in ("id", "email", "created_at")):
                return "update changed a field it was not given"
            if parse_time(body["updated_at"]) <= parse_time(before["updated_at"]):
                return "update did not move updated_at forward"
            if not self.header(TOKEN_HEADER):
                return "update answered without a consistency token"
            return None

        _, body = self.call(
            method,
            USERS + user_id,
            name=name or f"{method} /api/v1/users/[id]",
            expect=200,
            json=sent,
            check=check,
        )
        self.mine[user_id] = body
        return body

    def delete_own(self, user_id: str, name: str = "DELETE /api/v1/users/[id]") -> None:
        def check(status: int, body: Any) -> str | None:
            if body is not None:
                return "204 with a body"
            return None if self.header(TOKEN_HEADER) else "delete answered without a token"

        self.call("DELETE", USERS + user_id, name=name, expect=204, check=check)
        self.mine.pop(user_id, None)
        self.gone.append(user_id)

    def find_own_by_email(self, user_id: str, name: str = "GET /api/v1/users/?email") -> None:
        known = self.mine[user_id]

        def check(status: int, body: Any) -> str | None:
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                return "email lookup has no results list"
            if body["results"] != [known]:
                return f"{CONSISTENCY}: email lookup does not return the user as written"
            return None

        path = f"{USERS}?email={quote(known['email'])}"
        self.call("GET", path, name=name, expect=200, check=check)

    def list_page(self, path: str, limit: int, name: str, check: Check | None = None) -> dict:
        """One list page, checked for shape and order (plus `check`, if given)."""

        def full_check(status: int, body: Any) -> str | None:
            return page_problem(body, limit) or (check(status, body) if check else None)

        _, body = self.call("GET", path, name=name, expect=200, check=full_check)
        for user in body["results"]:
            if user["id"] not in self.mine:
                self.sampled.append(user["id"])
        return body

    def health(self) -> None:
        def check(status: int, body: Any) -> str | None:
            ok = isinstance(body, dict) and body.get("status") == "ok"
            return None if ok else "health status is not ok"

        self.call("GET", "/health", name="GET /health", expect=200, check=check)

    # -- helpers --------------------------------------------------------------------------

    def any_own(self) -> str | None:
        return random.choice(list(self.mine)) if self.mine else None

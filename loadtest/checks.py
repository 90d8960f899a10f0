"""The contract a load-test client checks in every answer, as plain functions.

No locust here (importing locust patches the process with gevent), so the test suite can
prove each rule on hand-made bodies. Each function returns None when the body keeps the rule,
or a short reason without ids (locust groups failures by their message). A reason containing
CONSISTENCY is a read that shows less than the client already wrote, or a list walk that
repeats, reorders or loses rows: the runner counts those apart.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

USERS = "/api/v1/users/"
CONSISTENCY = "consistency violation"
USER_FIELDS = {"id", "name", "email", "created_at", "updated_at"}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def sort_key(user: dict) -> tuple[datetime, uuid.UUID]:
    """The list's total order, newest first: (created_at, id) descending. Python compares
    UUIDs as 128-bit integers, the same order as PostgreSQL's uuid type."""
    return (parse_time(user["created_at"]), uuid.UUID(user["id"]))  # type: ignore[return-value]


def user_problem(body: Any) -> str | None:
    """Why `body` is not a well-formed user representation, or None."""
    if not isinstance(body, dict):
        return "user is not a JSON object"
    if set(body) != USER_FIELDS:
        return "user fields are not exactly id, name, email, created_at, updated_at"
    try:
        uuid.UUID(body["id"])
    except (ValueError, TypeError, AttributeError):
        return "user id is not a UUID"
    if not isinstance(body["name"], str) or not body["name"]:
        return "user name is empty"
    if not isinstance(body["email"], str) or "@" not in body["email"]:
        return "user email is malformed"
    created, updated = parse_time(body["created_at"]), parse_time(body["updated_at"])
    if created is None or updated is None:
        return "user timestamps are not ISO 8601 with a time zone"
    if updated < created:
        return "user updated_at is before created_at"
    return None


def error_problem(body: Any, code: str) -> str | None:
    """Why `body` is not the API's error shape with `code`, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return "error body lacks the error message"
    if body.get("code") != code:
        return f"error code is not {code}"
    return None


def page_problem(body: Any, limit: int) -> str | None:
    """Why `body` is not a well-formed list page of at most `limit` users, newest first."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return "page has no results list"
    results = body["results"]
    if len(results) > limit:
        return "page holds more rows than its limit"
    for user in results:
        if problem := user_problem(user):
            return f"page row: {problem}"
    keys = [sort_key(user) for user in results]
    if any(a <= b for a, b in zip(keys, keys[1:], strict=False)):
        return "page rows are not strictly newest first by (created_at, id)"
    nxt = body.get("next")
    if nxt is not None and (not isinstance(nxt, str) or "cursor=" not in nxt):
        return "next is neither null nor a URL with a cursor"
    if nxt is not None and len(results) < limit:
        return "short page still has a next link"
    return None


def next_query(next_url: str) -> str | None:
    """The `?cursor=...&limit=...` part of a next link, to replay it against our own base URL
    (the API builds it from the Host header, which a proxy may have rewritten)."""
    parts = urlsplit(next_url)
    if "cursor" not in parse_qs(parts.query):
        return None
    return f"{USERS}?{parts.query}"


class Walk:
    """What a walk has seen so far, and the rules each new page must keep."""

    def __init__(self, markers: dict[str, dict]) -> None:
        self.markers = dict(markers)
        self.seen: set[str] = set()
        self.last_key: Any = None
        self.rows = 0

    def take(self, body: dict) -> str | None:
        """Check one page against everything before it; None when it keeps every rule."""
        rows = body["results"]
        for row in rows:
            key = sort_key(row)
            if row["id"] in self.seen:
                return f"{CONSISTENCY}: a row appears twice in one walk"
            if self.last_key is not None and key >= self.last_key:
                return f"{CONSISTENCY}: rows are not newest first across pages"
            self.seen.add(row["id"])
            self.last_key = key
            self.rows += 1
            marker = self.markers.get(row["id"])
            if marker is not None and row != marker:
                return f"{CONSISTENCY}: the list shows a stale version of a marker"
        end = body["next"] is None
        for marker_id, marker in self.markers.items():
            passed = end or (self.last_key is not None and sort_key(marker) > self.last_key)
            if passed and marker_id not in self.seen:
                return f"{CONSISTENCY}: the walk passed a committed row without showing it"
        return None

"""Reading users: by id, by email and in pages across every shard.

The list is newest first in the total order (created_at, id), merged from every shard.
Each shard answers at most limit+1 rows after the cursor with an index scan on
(created_at, id), so a cursor page costs the same at any depth; offsets are allowed only
for shallow pages (LIST_MAX_OFFSET) because they read offset+limit rows per shard."""

import heapq
import uuid
from dataclasses import dataclass, field

from shards import slot_map
from shards.access import run_read
from shards.errors import ShardUnavailable
from shards.routing import canonical_email
from shards.scatter import scatter
from shards.topology import Shard, all_shards, shard_by_id, shard_for_user_id
from users import email_lookup, user_queries
from users.models import User
from users.pagination import Cursor


@dataclass
class Page:
    results: list  # named rows with the fields of user_queries.USER_FIELDS
    next_cursor: Cursor | None
    missing_shards: list[str] = field(default_factory=list)


def get_user(*, user_id: uuid.UUID) -> User | None:
    """The user, from its shard's replica when that holds the request's consistency token
    (a row missing there is looked up on the primary), else from the primary."""
    shard = shard_for_user_id(user_id)
    return run_read(
        shard,
        lambda: user_queries.user_by_id(shard, user_id),
        confirm_on_primary=lambda user: user is None,
    )


def find_user_by_email(*, email: str) -> User | None:
    user_id = email_lookup.user_id_for_email(email)
    if user_id is None:
        return None
    user = get_user(user_id=user_id)
    # A stale claim may point at a user whose email has since changed.
    if user is None or canonical_email(user.email) != canonical_email(email):
        return None
    return user


def count_users(shard: Shard) -> int:
    """Users on `shard` (exact, from trigger-kept counters), from its replica when usable."""
    return run_read(shard, lambda: user_queries.count(shard))


def _sort_key(row) -> tuple:
    return (row.created_at, row.id)


def list_users(
    *,
    limit: int,
    after: Cursor | None = None,
    offset: int = 0,
    allow_partial: bool = False,
) -> Page:
    """One page, newest first. Raises ShardUnavailable when a shard fails, unless
    `allow_partial`, in which case the page names the missing shards."""
    wanted = offset + limit + 1  # one more than needed tells whether a next page exists
    position = None if after is None else (after.created_at, after.id)

    foreign = slot_map.current().foreign  # one map for every shard of the page

    def shard_page(shard: Shard) -> list:
        skip = foreign.get(shard.id, ())
        return run_read(shard, lambda: user_queries.page(shard, position, wanted, skip))

    answers = scatter(all_shards(), shard_page)
    missing = sorted(
        shard_by_id(i).name for i, rows in answers.items() if isinstance(rows, Exception)
    )
    for rows in answers.values():
        if isinstance(rows, Exception) and not isinstance(rows, ShardUnavailable):
            raise rows
    if missing and not allow_partial:
        raise ShardUnavailable(missing)
    streams = [rows for rows in answers.values() if not isinstance(rows, Exception)]
    merged = heapq.merge(*streams, key=_sort_key, reverse=True)
    window = [row for _, row in zip(range(wanted), merged, strict=False)][offset:]
    results = window[:limit]
    has_more = len(window) > limit
    next_cursor = Cursor(results[-1].created_at, results[-1].id) if has_more else None
    return Page(results=results, next_cursor=next_cursor, missing_shards=missing)

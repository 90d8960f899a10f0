"""Statements on the `users` table, each written once.

Most are querysets. The three the service runs on every request (a user by id, a page of the
list, a create) are prepared (`shards.prepared`): Django compiles them once instead of on
every call, which costs more CPU than running them. Two are SQL, each with the reason the ORM
cannot say it. Every function runs where the router sends it: call it inside
`shards.access.run_read`/`run_write`, which pin the shard's alias after a failure.
"""

import uuid
from collections.abc import Collection
from contextlib import suppress
from datetime import UTC, datetime

import psycopg
from django.db import DatabaseError, connections, router
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from shards.consistency import lsn_to_int
from shards.prepared import PreparedInsert, PreparedQuery
from shards.topology import Shard
from users.models import User, UserCount

USER_FIELDS = ("id", "name", "email", "created_at", "updated_at")

_BY_ID = PreparedQuery(
    lambda user_id: User.objects.filter(id=user_id)[:1], user_id=uuid.UUID(int=1)
)


# Newest first in the total order (created_at, id), from the index users_created_at_id_idx.
# "After the cursor" is created_at <= c minus the rows at c with id >= the cursor's: the
# index range starts at the cursor, so a page costs the same at any depth.
def _newest(count: int, skip: Collection[int] = ()) -> QuerySet:
    return (
        User.objects.exclude(slot__in=skip)
        .order_by("-created_at", "-id")
        .values_list(*USER_FIELDS, named=True)[:count]
    )


def _after(
    created_at: datetime, user_id: uuid.UUID, count: int, skip: Collection[int] = ()
) -> QuerySet:
    return (
        User.objects.filter(created_at__lte=created_at)
        .exclude(created_at=created_at, id__gte=user_id)
        .exclude(slot__in=skip)
        .order_by("-created_at", "-id")
        .values_list(*USER_FIELDS, named=True)[:count]
    )


_NEWEST = PreparedQuery(_newest, inlined=("count",), count=1)
_AFTER = PreparedQuery(
    _after,
    inlined=("count",),
    created_at=datetime(2000, 1, 1, tzinfo=UTC),
    user_id=uuid.UUID(int=2),
    count=1,
)
_INSERT = PreparedInsert(User)


def user_by_id(shard: Shard, user_id: uuid.UUID) -> User | None:
    """The user `user_id` of `shard` (the caller has routed the id already)."""
    rows = _BY_ID.fetch({"shard": shard}, user_id=user_id)
    return rows[0] if rows else None


def page(
    shard: Shard,
    after: tuple[datetime, uuid.UUID] | None,
    count: int,
    skip: Collection[int] = (),
) -> list:
    """At most `count` users of `shard` after `after` (created_at, id), newest first, as
    named rows with the fields of USER_FIELDS, leaving out the rows of the slots in `skip`:
    the slots the map names foreign on this shard (copies of a move). One page across shards
    takes them from one map for every shard, or a switch between two shards' reads would
    list a moving slot twice or not at all."""
    if skip:
        skip = sorted(skip)
        queryset = _newest(count, skip) if after is None else _after(*after, count, skip)
        return list(queryset.using(router.db_for_read(User, shard=shard)))
    if after is None:
        return _NEWEST.fetch({"shard": shard}, count=count)
    return _AFTER.fetch({"shard": shard}, created_at=after[0], user_id=after[1], count=count)


def insert(user: User) -> None:
    _INSERT.insert(user)


# A create whose id lives on its email's shard (users.services picks such ids): the email's
# claim and the user's row in one transaction, and the WAL position after its commit, all in
# one message and one round trip. SQL because the ORM can say neither an INSERT fed by an
# INSERT ... ON CONFLICT DO NOTHING nor a read after COMMIT in the same message (client-side
# binding, Django's default with psycopg 3, sends the statements as one simple query).
# No conflict target: ON CONFLICT handles only the unique indexes it names, and a racing
# claim of the same email may meet (slot, email) before the primary key (a unique violation).
_INSERT_WITH_CLAIM = """BEGIN;
WITH claim AS (
    INSERT INTO email_lookup (email, user_id, claimed_at) VALUES (%s, %s, now())
    ON CONFLICT DO NOTHING RETURNING user_id
)
INSERT INTO users (id, name, email, created_at, updated_at)
SELECT user_id, %s, %s, %s, %s FROM claim;
COMMIT;
SELECT pg_current_wal_lsn()::text"""


def insert_with_claim(user: User, email_key: str) -> tuple[bool, int]:
    """(whether `user` was created, WAL position after the commit). Nothing is written when
    someone holds `email_key` (the caller then runs the claim protocol). The user's shard
    must be its email's shard."""
    alias = router.db_for_write(User, instance=user)
    connection = connections[alias]
    params = [email_key, user.id, user.name, user.email, user.created_at, user.updated_at]
    try:
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_WITH_CLAIM, params)
            cursor.nextset()  # BEGIN -> INSERT
            inserted = cursor.rowcount == 1
            cursor.nextset()  # -> COMMIT
            cursor.nextset()  # -> the position
            return inserted, lsn_to_int(cursor.fetchone()[0])
    except DatabaseError:
        _end_failed_transaction(connection.connection)
        raise


def _end_failed_transaction(raw: psycopg.Connection | None) -> None:
    """A statement that failed after BEGIN (a resharding fence) leaves the transaction open
    and aborted on a connection that goes back to the pool: end it here. A connection in any
    other state than a transaction is closed (the pool then drops it)."""
    if raw is None or raw.closed:
        return
    status = raw.info.transaction_status
    if status == psycopg.pq.TransactionStatus.IDLE:
        return
    if status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            raw.execute("ROLLBACK")
            return
    raw.close()


def count(shard: Shard) -> int:
    """Users on `shard`, from the trigger-kept counters (no table scan)."""
    total = UserCount.objects.for_shard(shard).aggregate(total=Coalesce(Sum("n"), 0))["total"]
    return int(total)


def table_sizes(shard: Shard) -> tuple[int, int]:
    """Bytes of `users` and `email_lookup` on `shard`, indexes and TOAST included. SQL
    because sizes are functions of the catalog, not rows of a model."""
    alias = router.db_for_read(User, shard=shard)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('users'), pg_total_relation_size('email_lookup')"
        )
        users_bytes, email_lookup_bytes = cursor.fetchone()
    return int(users_bytes), int(email_lookup_bytes)


def email_of(user_id: uuid.UUID) -> str | None:
    return User.objects.for_key(user_id).filter(id=user_id).values_list("email", flat=True).first()


def update_returning(user_id: uuid.UUID, changes: dict) -> User | None:
    """Apply `changes` and return the row as it now is. SQL because the ORM's update()
    returns a count: reading the row back would be a second round trip, and could show
    another writer's change."""
    alias = router.db_for_write(User, shard_key=user_id)
    assignments = ", ".join(f"{User._meta.get_field(name).column} = %s" for name in changes)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"UPDATE users SET {assignments} WHERE id = %s RETURNING {', '.join(USER_FIELDS)}",
            [*changes.values(), user_id],
        )
        row = cursor.fetchone()
    return User.from_db(alias, list(USER_FIELDS), row) if row else None


def delete(user_id: uuid.UUID) -> str | None:
    """Delete the user and, by Django's cascade, the rows that live with it on its shard;
    the email it held, or None if there was no such user. In a transaction: the row is
    locked from the read to the delete."""
    users = User.objects.for_key(user_id).select_for_update().filter(id=user_id)
    user = users.only("id", "email").first()
    if user is None:
        return None
    user.delete()
    return user.email


def lock_email_changes(connection, user_id: uuid.UUID, timeout_seconds: float) -> None:
    """Take the user's email-change lock in the open transaction of `connection` (see
    users.services.email_change_lock), waiting at most `timeout_seconds`. SQL because an
    advisory lock is a function, not a table; transaction-level, because PgBouncer's
    transaction pooling keeps no session for a session lock to live in. The key is the
    id's first 64 bits: a collision only makes two users take turns."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true)", [f"{int(timeout_seconds * 1000)}ms"]
        )
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            [int.from_bytes(user_id.bytes[:8], "big", signed=True)],
        )

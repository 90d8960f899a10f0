"""What user operations mean: the order of writes across shards and their failure paths.

Plain keyword-only functions, callable without HTTP. Each returns what it changed and the
WAL positions it produced per shard (for the client's consistency token). Every write is a
single statement in autocommit, so each costs one round trip and is atomic on its own; the
order of the writes (claim the email, then write the user) is what keeps emails unique."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.conf import settings
from django.db import DatabaseError, OperationalError, connections
from django.utils import timezone

from shards.access import read_primary, run_write
from shards.consistency import Positions
from shards.errors import ShardUnavailable, WriteOutcomeUnknown
from shards.health import monitor
from shards.routing import canonical_email
from shards.topology import Shard, shard_for_user_id
from users import email_lookup
from users.models import User
from users.selectors import USER_COLUMNS, UserRow, user_cursor


class UserNotFound(Exception):
    pass


class UserBusy(Exception):
    """Another change of this user's email held its lock for longer than
    USER_LOCK_TIMEOUT: nothing was changed; the client may retry."""


@contextmanager
def email_change_lock(shard: Shard, user_id: uuid.UUID) -> Iterator[None]:
    """Serialise the email changes of one user.

    An email change reads the old address, claims the new one, updates the row and then
    releases the old claim. Two changes of one user interleaved could release a claim the
    row holds again (A->B and B->A), after which another user could register the address.
    A transaction-level advisory lock on the user's primary, held on a connection of its
    own while the whole protocol runs, makes them take turns. Transaction-level, because
    PgBouncer's transaction pooling keeps no session for a session lock to live in."""
    alias = shard.primary_alias
    if not monitor.is_up(alias):
        raise ShardUnavailable([shard.name])
    # A second connection to the same database: the protocol's own writes must commit on
    # their own while the lock is held.
    lock = connections.create_connection(alias)
    try:
        try:
            lock.set_autocommit(False)
            with lock.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    [f"{int(settings.USER_LOCK_TIMEOUT * 1000)}ms"],
                )
                # The lock's key: the id's first 64 bits (a collision only makes two users
                # take turns).
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    [int.from_bytes(user_id.bytes[:8], "big", signed=True)],
                )
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
                raise UserBusy(user_id) from exc
            raise ShardUnavailable([shard.name]) from exc
        yield
    finally:
        with suppress(DatabaseError):
            lock.rollback()  # ends the transaction: the lock goes with it
        with suppress(DatabaseError):
            lock.close()


def create_user(*, name: str, email: str) -> tuple[UserRow, Positions]:
    """Claim the email, then write the user. Raises EmailTaken."""
    user_id = uuid.uuid4()
    started = time.monotonic()
    email_lookup.claim(email, user_id)
    shard = shard_for_user_id(user_id)
    now = timezone.now()

    def insert(alias: str) -> None:
        # One plain INSERT: Model.save() costs twice as much CPU for the same statement.
        with connections[alias].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                [user_id, name, email, now, now],
            )

    try:
        _, lsn = run_write(shard, insert, atomic=False)
    except ShardUnavailable as exc:
        if not isinstance(exc, WriteOutcomeUnknown):
            # Nothing was written: free the email now rather than after the claim timeout.
            email_lookup.release(email, user_id)
        raise
    # Slow enough that the claim could have been taken over as stale: check, and undo the
    # user row if it was.
    slow = time.monotonic() - started > settings.EMAIL_CLAIM_TIMEOUT / 2
    if slow and not email_lookup.still_claimed_by(email, user_id):
        run_write(shard, lambda alias: _delete_user_row(user_id))
        raise email_lookup.EmailTaken(email)
    return UserRow(user_id, name, email, now, now), {shard.id: lsn} if lsn else {}


def _delete_user_row(user_id: uuid.UUID) -> str | None:
    """Delete the user and, by Django's cascade, the rows that live with it on its shard;
    the email it held, or None if there was no such user. Runs in run_write's transaction:
    the row is locked from the read to the delete."""
    users = User.objects.for_key(user_id).select_for_update().filter(id=user_id)
    user = next(iter(users.only("id", "email")[:1]), None)
    if user is None:
        return None
    user.delete()
    return user.email


def _update_row(alias: str, user_id: uuid.UUID, changes: dict) -> UserRow | None:
    assignments = ", ".join(f"{column} = %s" for column in changes)
    with user_cursor(alias) as cursor:
        cursor.execute(
            f"UPDATE users SET {assignments} WHERE id = %s RETURNING {USER_COLUMNS}",
            [*changes.values(), user_id],
        )
        row = cursor.fetchone()
    return UserRow(*row) if row else None


def update_user(
    *, user_id: uuid.UUID, name: str | None = None, email: str | None = None
) -> tuple[UserRow, Positions]:
    """Change the given fields only. A new email is claimed before the row changes and the
    old claim released after, one change of the user's email at a time. Raises
    UserNotFound, EmailTaken, UserBusy."""
    shard = shard_for_user_id(user_id)
    changes: dict = {}
    if name is not None:
        changes["name"] = name
    if email is None:
        return _write_update(shard, user_id, changes)
    changes["email"] = email
    with email_change_lock(shard, user_id):

        def current_email(alias: str) -> str | None:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT email FROM users WHERE id = %s", [user_id])
                row = cursor.fetchone()
            return row[0] if row else None

        old_email = read_primary(shard, current_email)
        if old_email is None:
            raise UserNotFound(user_id)
        if canonical_email(old_email) == canonical_email(email):
            return _write_update(shard, user_id, changes)
        email_lookup.claim(email, user_id)
        try:
            result = _write_update(shard, user_id, changes)
        except ShardUnavailable as exc:
            if not isinstance(exc, WriteOutcomeUnknown):
                email_lookup.release(email, user_id)
            raise
        except UserNotFound:
            email_lookup.release(email, user_id)
            raise
        email_lookup.release(old_email, user_id)
        return result


def _write_update(shard: Shard, user_id: uuid.UUID, changes: dict) -> tuple[UserRow, Positions]:
    changes["updated_at"] = timezone.now()
    user, lsn = run_write(shard, lambda alias: _update_row(alias, user_id, changes), atomic=False)
    if user is None:
        raise UserNotFound(user_id)
    return user, {shard.id: lsn} if lsn else {}


def delete_user(*, user_id: uuid.UUID) -> Positions:
    """Delete the row, then release its email. Raises UserNotFound."""
    shard = shard_for_user_id(user_id)
    email, lsn = run_write(shard, lambda alias: _delete_user_row(user_id))
    if email is None:
        raise UserNotFound(user_id)
    email_lookup.release(email, user_id)
    return {shard.id: lsn} if lsn else {}

"""What user operations mean: the order of writes across shards and their failure paths.

Plain keyword-only functions, callable without HTTP. Each returns what it changed and the
WAL positions it produced per shard (for the client's consistency token). Every write is a
single statement in autocommit, so each costs one round trip and is atomic on its own; the
order of the writes (claim the email, then write the user) is what keeps emails unique."""

import time
import uuid

from django.conf import settings
from django.db import connections
from django.utils import timezone

from shards.access import read_primary, run_write
from shards.consistency import Positions
from shards.errors import ShardUnavailable, WriteOutcomeUnknown
from shards.routing import canonical_email
from shards.topology import shard_for_user_id
from users import email_lookup
from users.selectors import USER_COLUMNS, UserRow, user_cursor


class UserNotFound(Exception):
    pass


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
        run_write(shard, lambda alias: _delete_row(alias, user_id), atomic=False)
        raise email_lookup.EmailTaken(email)
    return UserRow(user_id, name, email, now, now), {shard.id: lsn} if lsn else {}


def _delete_row(alias: str, user_id: uuid.UUID) -> str | None:
    with connections[alias].cursor() as cursor:
        cursor.execute("DELETE FROM users WHERE id = %s RETURNING email", [user_id])
        row = cursor.fetchone()
    return row[0] if row else None


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
    old claim released after. Raises UserNotFound, EmailTaken."""
    shard = shard_for_user_id(user_id)
    changes: dict = {}
    if name is not None:
        changes["name"] = name
    old_email = None
    if email is not None:
        changes["email"] = email

        def current_email(alias: str) -> str | None:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT email FROM users WHERE id = %s", [user_id])
                row = cursor.fetchone()
            return row[0] if row else None

        old_email = read_primary(shard, current_email)
        if old_email is None:
            raise UserNotFound(user_id)
    moving = old_email is not None and canonical_email(old_email) != canonical_email(email)
    if moving:
        email_lookup.claim(email, user_id)
    changes["updated_at"] = timezone.now()
    try:
        user, lsn = run_write(
            shard, lambda alias: _update_row(alias, user_id, changes), atomic=False
        )
    except ShardUnavailable as exc:
        if moving and not isinstance(exc, WriteOutcomeUnknown):
            email_lookup.release(email, user_id)
        raise
    if user is None:
        if moving:
            email_lookup.release(email, user_id)
        raise UserNotFound(user_id)
    if moving:
        email_lookup.release(old_email, user_id)
    return user, {shard.id: lsn} if lsn else {}


def delete_user(*, user_id: uuid.UUID) -> Positions:
    """Delete the row, then release its email. Raises UserNotFound."""
    shard = shard_for_user_id(user_id)
    email, lsn = run_write(shard, lambda alias: _delete_row(alias, user_id), atomic=False)
    if email is None:
        raise UserNotFound(user_id)
    email_lookup.release(email, user_id)
    return {shard.id: lsn} if lsn else {}

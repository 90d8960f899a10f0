"""Email uniqueness across shards: a consistent lookup table.

Contract (a consistent lookup vindex, in Vitess's words): `email_lookup` maps an email,
lower-cased, to the id of the user who holds it, and lives on the shard the email hashes to.
A user is created only after its email is claimed there, so two creates with one email on
two different shards cannot both win: the claim's primary key decides. The claim is moved
when the email changes and removed when the user is deleted.

A claim is live while its user row holds the email. A claim whose user row does not (a
crash between the two writes, a failed create, a half-finished email change or delete) is
stale once it is older than EMAIL_CLAIM_TIMEOUT, and the next claimant takes it over; a
younger one may be a create still in progress, so it still wins. Take-overs are
compare-and-set, so two claimants of a stale row cannot both succeed. A create that took
longer than half the timeout checks that its claim was not taken over meanwhile.

The same table answers `?email=` lookups in one hop. Lookups need no consistency token: a
claim missing on a replica is looked up on the primary, and a claim that moved is caught
because the user row it points to no longer holds the email.
"""

import logging
import uuid

from django.conf import settings
from django.db import DatabaseError, connections

from shards.access import read_primary, run_read, run_write
from shards.errors import ShardUnavailable
from shards.routing import canonical_email
from shards.topology import shard_for_email, shard_for_user_id

logger = logging.getLogger(__name__)


class EmailTaken(Exception):
    def __init__(self, email: str, pending: bool = False) -> None:
        self.email = email
        self.pending = pending
        super().__init__(email)


def _user_holds_email(user_id: uuid.UUID, email: str) -> bool:
    """Whether the user row exists and has this email (read on its primary)."""

    def fetch(alias: str) -> str | None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT email FROM users WHERE id = %s", [user_id])
            row = cursor.fetchone()
        return row[0] if row else None

    current = read_primary(shard_for_user_id(user_id), fetch)
    return current is not None and canonical_email(current) == email


def claim(email: str, user_id: uuid.UUID) -> None:
    """Claim `email` for `user_id`. Raises EmailTaken if another user holds it or is being
    created with it."""
    key = canonical_email(email)
    shard = shard_for_email(key)

    def insert(alias: str):
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "INSERT INTO email_lookup (email, user_id, claimed_at)"
                " VALUES (%s, %s, now()) ON CONFLICT (email) DO NOTHING RETURNING user_id",
                [key, user_id],
            )
            return cursor.fetchone()

    inserted, _ = run_write(shard, insert, atomic=False, wal_position=False)
    if inserted:
        return

    def holder_of(alias: str):
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT user_id, claimed_at, claimed_at < now() - make_interval(secs => %s)"
                " FROM email_lookup WHERE email = %s",
                [settings.EMAIL_CLAIM_TIMEOUT, key],
            )
            return cursor.fetchone()

    existing = read_primary(shard, holder_of)
    if existing is None:  # released since our insert: try once more
        inserted, _ = run_write(shard, insert, atomic=False, wal_position=False)
        if inserted:
            return
        raise EmailTaken(key)
    holder, claimed_at, expired = existing
    if holder == user_id:
        # Left by an earlier change of this user whose outcome was unknown: renew it, so
        # that a take-over of the old, maybe expired, claim cannot slip in before the row
        # is written (the renewal and a take-over are both compare-and-set).
        renewed, _ = run_write(
            shard,
            lambda alias: _set_claim(alias, key, user_id, user_id, claimed_at),
            atomic=False,
            wal_position=False,
        )
        if not renewed:
            raise EmailTaken(key)
        return
    if _user_holds_email(holder, key):
        raise EmailTaken(key)
    if not expired:
        raise EmailTaken(key, pending=True)

    taken, _ = run_write(
        shard,
        lambda alias: _set_claim(alias, key, user_id, holder, claimed_at),
        atomic=False,
        wal_position=False,
    )
    if not taken:
        raise EmailTaken(key)
    logger.info("took over the stale email claim of user %s", holder)


def _set_claim(alias: str, key: str, user_id: uuid.UUID, holder: uuid.UUID, claimed_at) -> int:
    """Give the claim on `key` to `user_id`, now, if `holder` still has it as it was read
    (compare-and-set); the number of rows changed."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "UPDATE email_lookup SET user_id = %s, claimed_at = now()"
            " WHERE email = %s AND user_id = %s AND claimed_at = %s",
            [user_id, key, holder, claimed_at],
        )
        return cursor.rowcount


def still_claimed_by(email: str, user_id: uuid.UUID) -> bool:
    """Whether `user_id` still holds the claim on `email` (read on the primary)."""
    key = canonical_email(email)

    def fetch(alias: str) -> bool:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT user_id FROM email_lookup WHERE email = %s", [key])
            row = cursor.fetchone()
        return bool(row) and row[0] == user_id

    return read_primary(shard_for_email(key), fetch)


def release(email: str, user_id: uuid.UUID) -> None:
    """Drop `user_id`'s claim on `email`, if it still has one. Never raises: a claim left
    behind is stale and will be taken over (see the module's contract)."""
    key = canonical_email(email)

    def delete(alias: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "DELETE FROM email_lookup WHERE email = %s AND user_id = %s", [key, user_id]
            )

    try:
        run_write(shard_for_email(key), delete, atomic=False, wal_position=False)
    except (ShardUnavailable, DatabaseError):
        logger.warning("could not release an email claim; it will expire")


def user_id_for_email(email: str) -> uuid.UUID | None:
    key = canonical_email(email)

    def fetch(alias: str) -> uuid.UUID | None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT user_id FROM email_lookup WHERE email = %s", [key])
            row = cursor.fetchone()
        return row[0] if row else None

    return run_read(shard_for_email(key), fetch, confirm_on_primary=lambda found: found is None)

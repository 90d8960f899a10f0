"""Email uniqueness across shards: a consistent lookup table.

Contract (a consistent lookup vindex, in Vitess's words): `email_lookup` maps an email,
lower-cased, to the id of the user who holds it, and lives on the shard the email hashes to.
A user is created only after its email is claimed there, so two creates with one email on
two different shards cannot both win: the claim's primary key decides. The claim is
confirmed after the user row is written, moved when the email changes and removed when the
user is deleted. A claim whose user row does not hold the email (a crash between the two
writes, a failed create, a half-finished email change) is stale and is taken over by the
next claimant once it is older than EMAIL_CLAIM_TIMEOUT; an unconfirmed, younger claim is a
create in progress and still wins. Take-overs are compare-and-set, so two claimants of a
stale row cannot both succeed. The same table answers `?email=` lookups in one hop.
"""

import logging
import uuid

from django.conf import settings
from django.db import DatabaseError, connections

from shards.access import run_read, run_write
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
    shard = shard_for_user_id(user_id)

    def fetch(alias: str) -> str | None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT email FROM users WHERE id = %s", [user_id])
            row = cursor.fetchone()
        return row[0] if row else None

    current = run_read(shard, fetch, min_lsn=None, confirm_on_primary=lambda _: True)
    return current is not None and canonical_email(current) == email


def claim(email: str, user_id: uuid.UUID) -> int | None:
    """Claim `email` for `user_id`; returns the lookup shard's WAL position.

    Raises EmailTaken if another user holds it (or is being created with it)."""
    key = canonical_email(email)
    shard = shard_for_email(key)

    def insert(alias: str):
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "INSERT INTO email_lookup (email, user_id, confirmed, claimed_at)"
                " VALUES (%s, %s, false, now()) ON CONFLICT (email) DO NOTHING"
                " RETURNING user_id",
                [key, user_id],
            )
            if cursor.fetchone():
                return None
            cursor.execute(
                "SELECT user_id, confirmed, claimed_at, "
                " claimed_at < now() - make_interval(secs => %s)"
                " FROM email_lookup WHERE email = %s",
                [settings.EMAIL_CLAIM_TIMEOUT, key],
            )
            return cursor.fetchone()

    existing, lsn = run_write(shard, insert)
    if existing is None:
        return lsn
    holder, confirmed, claimed_at, expired = existing
    if holder == user_id:
        return lsn
    try:
        live = _user_holds_email(holder, key)
    except ShardUnavailable:
        raise
    if live:
        if not confirmed:
            confirm(key, holder)
        raise EmailTaken(key)
    if not confirmed and not expired:
        raise EmailTaken(key, pending=True)

    def take_over(alias: str) -> int:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "UPDATE email_lookup SET user_id = %s, confirmed = false, claimed_at = now()"
                " WHERE email = %s AND user_id = %s AND claimed_at = %s",
                [user_id, key, holder, claimed_at],
            )
            return cursor.rowcount

    taken, lsn = run_write(shard, take_over)
    if not taken:
        raise EmailTaken(key)
    logger.info("took over stale email claim of user %s", holder)
    return lsn


def confirm(email: str, user_id: uuid.UUID) -> bool:
    """Mark the claim as backed by a user row; False if the claim is no longer ours."""
    key = canonical_email(email)

    def update(alias: str) -> int:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "UPDATE email_lookup SET confirmed = true WHERE email = %s AND user_id = %s",
                [key, user_id],
            )
            return cursor.rowcount

    updated, _ = run_write(shard_for_email(key), update)
    return bool(updated)


def release(email: str, user_id: uuid.UUID) -> int | None:
    """Drop `user_id`'s claim on `email`, if it still has one. Never raises: a claim left
    behind is stale and will be taken over (see the module's contract)."""
    key = canonical_email(email)

    def delete(alias: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "DELETE FROM email_lookup WHERE email = %s AND user_id = %s", [key, user_id]
            )

    try:
        _, lsn = run_write(shard_for_email(key), delete)
        return lsn
    except (ShardUnavailable, DatabaseError):
        logger.warning("could not release an email claim; it will expire")
        return None


def user_id_for_email(email: str, *, min_lsn_by_shard: dict[int, int]) -> uuid.UUID | None:
    key = canonical_email(email)
    shard = shard_for_email(key)

    def fetch(alias: str) -> uuid.UUID | None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT user_id FROM email_lookup WHERE email = %s", [key])
            row = cursor.fetchone()
        return row[0] if row else None

    return run_read(
        shard,
        fetch,
        min_lsn=min_lsn_by_shard.get(shard.id),
        confirm_on_primary=lambda found: found is None,
    )

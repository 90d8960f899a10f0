"""Email uniqueness across shards: a consistent lookup table.

Contract (a consistent lookup vindex, in Vitess's words): `email_lookup` maps an email,
lower-cased, to the id of the user who holds it, and lives on the shard the email hashes to.
A user is created only once its email is claimed there (in the same transaction when its id
lives on that shard, as users.services arranges for new users), so two creates with one
email cannot both win: the claim's primary key decides. The claim is moved when the email
changes and removed when the user is deleted.

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
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, router
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now

from shards.access import read_primary, retried_while_moving, run_read, run_write
from shards.errors import ShardUnavailable
from shards.routing import canonical_email
from shards.topology import shard_for_email, shard_for_user_id
from users import user_queries
from users.models import EmailLookup

logger = logging.getLogger(__name__)


class EmailTaken(Exception):
    def __init__(self, email: str, pending: bool = False) -> None:
        self.email = email
        self.pending = pending
        super().__init__(email)


def _user_holds_email(user_id: uuid.UUID, email: str) -> bool:
    """Whether the user row exists and has this email (read on its primary)."""
    current = read_primary(shard_for_user_id(user_id), lambda: user_queries.email_of(user_id))
    return current is not None and canonical_email(current) == email


def _insert_claim(key: str, user_id: uuid.UUID) -> bool:
    """Whether the claim was inserted (False: someone holds the email). SQL because the ORM
    cannot say INSERT ... ON CONFLICT DO NOTHING and learn whether the row went in
    (bulk_create(ignore_conflicts=True) does not tell), and a read first would race. No
    conflict target: every unique index of the table decides (see user_queries)."""
    alias = router.db_for_write(EmailLookup, shard_key=key)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "INSERT INTO email_lookup (email, user_id, claimed_at)"
            " VALUES (%s, %s, now()) ON CONFLICT DO NOTHING RETURNING user_id",
            [key, user_id],
        )
        return cursor.fetchone() is not None


def _holder(key: str) -> tuple | None:
    """(user id, claimed_at, expired) of the claim on `key`, or None."""
    expired = ExpressionWrapper(
        Q(claimed_at__lt=Now() - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT)),
        output_field=BooleanField(),
    )
    return (
        EmailLookup.objects.for_key(key)
        .filter(email=key)
        .annotate(expired=expired)
        .values_list("user_id", "claimed_at", "expired")
        .first()
    )


def _set_claim(key: str, user_id: uuid.UUID, holder: uuid.UUID, claimed_at) -> int:
    """Give the claim on `key` to `user_id`, now, if `holder` still has it as it was read
    (compare-and-set); the number of rows changed."""
    return (
        EmailLookup.objects.for_key(key)
        .filter(email=key, user_id=holder, claimed_at=claimed_at)
        .update(user_id=user_id, claimed_at=Now())
    )


def claim(email: str, user_id: uuid.UUID) -> None:
    """Claim `email` for `user_id`. Raises EmailTaken if another user holds it or is being
    created with it."""
    key = canonical_email(email)
    shard = shard_for_email(key)
    inserted, _ = run_write(
        shard, lambda: _insert_claim(key, user_id), atomic=False, wal_position=False
    )
    if inserted:
        return
    existing = read_primary(shard, lambda: _holder(key))
    if existing is None:  # released since our insert: try once more
        inserted, _ = run_write(
            shard, lambda: _insert_claim(key, user_id), atomic=False, wal_position=False
        )
        if inserted:
            return
        raise EmailTaken(key)
    holder, claimed_at, expired = existing
    if holder != user_id:
        if _user_holds_email(holder, key):
            raise EmailTaken(key)
        if not expired:
            raise EmailTaken(key, pending=True)
    # Take over a stale claim, or renew this user's own (left by an earlier change whose
    # outcome was unknown) so that a take-over of it cannot slip in before the row is
    # written: compare-and-set either way, so two claimants cannot both win.
    changed, _ = run_write(
        shard,
        lambda: _set_claim(key, user_id, holder, claimed_at),
        atomic=False,
        wal_position=False,
    )
    if not changed:
        raise EmailTaken(key)
    if holder != user_id:
        logger.info("took over the stale email claim of user %s", holder)


def _claimant(key: str) -> uuid.UUID | None:
    return (
        EmailLookup.objects.for_key(key).filter(email=key).values_list("user_id", flat=True).first()
    )


def still_claimed_by(email: str, user_id: uuid.UUID) -> bool:
    """Whether `user_id` still holds the claim on `email` (read on the primary)."""
    key = canonical_email(email)
    return read_primary(shard_for_email(key), lambda: _claimant(key)) == user_id


def release(email: str, user_id: uuid.UUID) -> None:
    """Drop `user_id`'s claim on `email`, if it still has one. Never raises: a claim left
    behind is stale and will be taken over (see the module's contract)."""
    key = canonical_email(email)

    def delete() -> None:
        EmailLookup.objects.for_key(key).filter(email=key, user_id=user_id).delete()

    @retried_while_moving
    def release_where_it_lives() -> None:
        run_write(shard_for_email(key), delete, wal_position=False)

    try:
        release_where_it_lives()
    except (ShardUnavailable, DatabaseError):
        logger.warning("could not release an email claim; it will expire")


def user_id_for_email(email: str) -> uuid.UUID | None:
    key = canonical_email(email)
    return run_read(
        shard_for_email(key), lambda: _claimant(key), confirm_on_primary=lambda found: found is None
    )

"""What user operations mean: the order of writes across shards and their failure paths.

Plain keyword-only functions, callable without HTTP. Each returns what it changed and the
WAL positions it produced per shard (for the client's consistency token). Every write is a
single statement in autocommit where it can be (one round trip, atomic on its own); the
order of the writes (claim the email, then write the user) is what keeps emails unique.
The statements are in users.user_queries and users.email_lookup."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.conf import settings
from django.db import DatabaseError, OperationalError, connections
from django.utils import timezone

from shards.access import read_primary, retried_while_moving, run_write
from shards.consistency import Positions
from shards.errors import ShardUnavailable, WriteOutcomeUnknown
from shards.health import monitor
from shards.routing import canonical_email
from shards.timeouts import time_limit
from shards.topology import Shard, shard_for_email, shard_for_user_id
from users import email_lookup, user_queries
from users.models import User


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
    own while the whole protocol runs, makes them take turns."""
    alias = shard.primary_alias
    if not monitor.is_up(alias):
        raise ShardUnavailable([shard.name])
    # A second connection to the same database: the protocol's own writes must commit on
    # their own while the lock is held.
    lock = connections.create_connection(alias)
    try:
        try:
            # Bounded like every database call: the wait for the lock, plus DB_TIMEOUT.
            limit = settings.USER_LOCK_TIMEOUT + settings.DB_TIMEOUT
            with time_limit(alias, limit, wrapper=lock):
                lock.set_autocommit(False)
                user_queries.lock_email_changes(lock, user_id, settings.USER_LOCK_TIMEOUT)
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


# Ids tried for one create before settling for one on another shard (see _id_beside): with
# N shards about N are needed; 0.8^256 says five even shards never run out.
_ID_TRIES = 256


def _id_beside(shard: Shard) -> tuple[uuid.UUID, bool]:
    """A random id that hashes to `shard` (a few MD5s), so that a new user lives beside its
    email's claim and both are written in one transaction, as Instagram puts the shard in
    the id for the same reason; and whether it does. Ids stay random UUIDs. Should the tries
    run out (a shard that owns almost no slots), the last id is used and the create takes
    the two-shard path."""
    for _ in range(_ID_TRIES):
        candidate = uuid.uuid4()
        if shard_for_user_id(candidate) == shard:
            return candidate, True
    return candidate, False


@retried_while_moving
def create_user(*, name: str, email: str) -> tuple[User, Positions]:
    """Claim the email, then write the user. Raises EmailTaken.

    The new id lives on the email's shard, where claim and row go in together in one round
    trip. When the email is held (by a user, a create under way or a stale claim) the claim
    protocol of users.email_lookup decides, and the row follows it."""
    started = time.monotonic()
    now = timezone.now()
    key = canonical_email(email)
    shard = shard_for_email(key)
    user_id, beside = _id_beside(shard)
    user = User(id=user_id, name=name, email=email, created_at=now, updated_at=now)
    if beside:
        # One transaction: nothing to release when it fails, whatever its outcome.
        (created, lsn), _ = run_write(
            shard,
            lambda: user_queries.insert_with_claim(user, key),
            atomic=False,
            wal_position=False,
        )
        if created:
            return user, {shard.id: lsn}
    email_lookup.claim(email, user.id)
    shard = shard_for_user_id(user.id)
    try:
        # One plain INSERT in autocommit: a round trip, atomic on its own.
        _, lsn = run_write(shard, lambda: user_queries.insert(user), atomic=False)
    except ShardUnavailable as exc:
        if not isinstance(exc, WriteOutcomeUnknown):
            # Nothing was written: free the email now rather than after the claim timeout.
            email_lookup.release(email, user.id)
        raise
    # Slow enough that the claim could have been taken over as stale: check, and undo the
    # user row if it was.
    slow = time.monotonic() - started > settings.EMAIL_CLAIM_TIMEOUT / 2
    if slow and not email_lookup.still_claimed_by(email, user.id):
        run_write(shard, lambda: user_queries.delete(user.id))
        raise email_lookup.EmailTaken(email)
    return user, {shard.id: lsn} if lsn else {}


@retried_while_moving
def update_user(
    *, user_id: uuid.UUID, name: str | None = None, email: str | None = None
) -> tuple[User, Positions]:
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
        old_email = read_primary(shard, lambda: user_queries.email_of(user_id))
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


def _write_update(shard: Shard, user_id: uuid.UUID, changes: dict) -> tuple[User, Positions]:
    changes["updated_at"] = timezone.now()
    user, lsn = run_write(
        shard, lambda: user_queries.update_returning(user_id, changes), atomic=False
    )
    if user is None:
        raise UserNotFound(user_id)
    return user, {shard.id: lsn} if lsn else {}


@retried_while_moving
def delete_user(*, user_id: uuid.UUID) -> Positions:
    """Delete the user (and, by Django's cascade, the rows that live with it), then release
    its email. Raises UserNotFound."""
    shard = shard_for_user_id(user_id)
    email, lsn = run_write(shard, lambda: user_queries.delete(user_id))
    if email is None:
        raise UserNotFound(user_id)
    email_lookup.release(email, user_id)
    return {shard.id: lsn} if lsn else {}

"""What user operations mean: the order of writes across shards and their failure paths.

Plain keyword-only functions, callable without HTTP. Each returns what it changed and the
WAL positions it produced per shard (for the client's consistency token)."""

import contextlib
import uuid

from django.utils import timezone

from shards.access import run_write
from shards.consistency import Positions
from shards.errors import ShardUnavailable
from shards.routing import canonical_email
from shards.topology import shard_for_email, shard_for_user_id
from users import email_lookup
from users.models import User


class UserNotFound(Exception):
    pass


def _record(positions: Positions, shard_id: int, lsn: int | None) -> None:
    if lsn is not None:
        positions[shard_id] = max(lsn, positions.get(shard_id, 0))


def create_user(*, name: str, email: str) -> tuple[User, Positions]:
    """Claim the email, write the user, confirm the claim. Raises EmailTaken."""
    user_id = uuid.uuid4()
    positions: Positions = {}
    _record(positions, shard_for_email(email).id, email_lookup.claim(email, user_id))
    shard = shard_for_user_id(user_id)
    now = timezone.now()
    user = User(id=user_id, name=name, email=email, created_at=now, updated_at=now)
    try:
        _, lsn = run_write(shard, lambda alias: user.save(using=alias, force_insert=True))
    except ShardUnavailable as exc:
        if exc.code == ShardUnavailable.code:
            # Nothing was written: free the email now rather than after the claim timeout.
            email_lookup.release(email, user_id)
        raise
    _record(positions, shard.id, lsn)
    try:
        still_ours = email_lookup.confirm(email, user_id)
    except ShardUnavailable:
        # The user row holds the email, so the unconfirmed claim counts as live anyway.
        still_ours = True
    if not still_ours:
        # The claim was taken over while this create stalled: undo the user row.
        run_write(shard, lambda alias: User.objects.using(alias).filter(id=user_id).delete())
        raise email_lookup.EmailTaken(email)
    return user, positions


def update_user(
    *, user_id: uuid.UUID, name: str | None = None, email: str | None = None
) -> tuple[User, Positions]:
    """Change the given fields only. A new email is claimed before the row changes and the
    old claim released after. Raises UserNotFound, EmailTaken."""
    shard = shard_for_user_id(user_id)
    positions: Positions = {}

    def current_email(alias: str) -> str | None:
        return User.objects.using(alias).filter(id=user_id).values_list("email", flat=True).first()

    old_email, _ = run_write(shard, current_email)
    if old_email is None:
        raise UserNotFound(user_id)
    moving = email is not None and canonical_email(email) != canonical_email(old_email)
    if moving:
        _record(positions, shard_for_email(email).id, email_lookup.claim(email, user_id))

    def update(alias: str) -> User | None:
        user = User.objects.using(alias).select_for_update().filter(id=user_id).first()
        if user is None:
            return None
        fields = ["updated_at"]
        if name is not None:
            user.name = name
            fields.append("name")
        if email is not None:
            user.email = email
            fields.append("email")
        user.updated_at = timezone.now()
        user.save(using=alias, update_fields=fields)
        return user

    try:
        user, lsn = run_write(shard, update)
    except ShardUnavailable as exc:
        if moving and exc.code == ShardUnavailable.code:
            email_lookup.release(email, user_id)
        raise
    if user is None:
        if moving:
            email_lookup.release(email, user_id)
        raise UserNotFound(user_id)
    _record(positions, shard.id, lsn)
    if moving:
        # If the lookup shard is down the row still holds the email: the claim stays live.
        with contextlib.suppress(ShardUnavailable):
            email_lookup.confirm(email, user_id)
        _record(positions, shard_for_email(old_email).id, email_lookup.release(old_email, user_id))
    return user, positions


def delete_user(*, user_id: uuid.UUID) -> Positions:
    """Delete the row, then release its email. Raises UserNotFound."""
    shard = shard_for_user_id(user_id)

    def delete(alias: str) -> str | None:
        user = User.objects.using(alias).select_for_update().filter(id=user_id).first()
        if user is None:
            return None
        User.objects.using(alias).filter(id=user_id).delete()
        return user.email

    email, lsn = run_write(shard, delete)
    if email is None:
        raise UserNotFound(user_id)
    positions: Positions = {}
    _record(positions, shard.id, lsn)
    _record(positions, shard_for_email(email).id, email_lookup.release(email, user_id))
    return positions

"""Tables of the users app. They live on every shard and never on `default`; each query
names its shard key, and the router finds the shard (see shards.models, shards.router)."""

from django.db import models

from shards.models import ShardedModel, slot_field
from shards.routing import canonical_email


class User(ShardedModel):
    shard_key = "id"

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=255)
    email = models.CharField(max_length=254)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    slot = slot_field("id")

    class Meta:
        db_table = "users"
        indexes = [
            # Keyset pagination walks (created_at, id) newest first.
            models.Index(fields=["-created_at", "-id"], name="users_created_at_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class EmailLookup(ShardedModel):
    """email (canonical form) -> user id, on the shard the email hashes to. See
    users.email_lookup for the protocol."""

    shard_key = "email"

    email = models.CharField(primary_key=True, max_length=254)
    user_id = models.UUIDField()
    claimed_at = models.DateTimeField()
    slot = slot_field("email")

    class Meta:
        db_table = "email_lookup"

    def __str__(self) -> str:
        return f"{self.email} -> {self.user_id}"

    @classmethod
    def routing_key(cls, value: str) -> str:
        return canonical_email(value)


class UserCount(ShardedModel):
    """Row count of `users` on this shard, kept exact by statement triggers (see the
    migration) in 16 buckets so concurrent inserts do not queue on one row; stats sum the
    buckets instead of scanning the table."""

    shard_key = None  # shard-local: each shard counts its own users

    bucket = models.SmallIntegerField(primary_key=True)
    n = models.BigIntegerField(default=0)

    class Meta:
        db_table = "user_counts"

    def __str__(self) -> str:
        return f"bucket {self.bucket}: {self.n}"

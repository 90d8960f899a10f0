"""A second sharded model, for tests only: a user's messages live on the user's shard.

Adding it took this file, its migration and one line in tests/settings.py: nothing in
shards/ knows it exists. The router finds its shard from `user_id`, and deleting a user
through the ORM cascades to its messages on that shard."""

import uuid

from django.db import models
from django.utils import timezone

from shards.models import ShardedModel, slot_field
from users.models import User


class Message(ShardedModel):
    shard_key = "user_id"  # co-located with its user

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    slot = slot_field("user_id")  # moves with its user when slots move

    class Meta:
        db_table = "messages"
        indexes = [models.Index(fields=["user", "-created_at"], name="messages_user_created_idx")]
        constraints = [models.UniqueConstraint(fields=["slot", "id"], name="messages_slot_id")]

    def __str__(self) -> str:
        return self.body[:40]

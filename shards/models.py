"""How a model says it is sharded, and the manager that carries its shard key to the router.

A sharded model subclasses `ShardedModel` and names its shard key field: `shard_key = "id"`
for users, `shard_key = "user_id"` for a model whose rows live with their user. Its queries
name the key, `Model.objects.for_key(key)`, and `shards.router.ShardRouter` sends them to
that key's shard: writes to the primary, reads to the replica when it may serve them. A
model with `shard_key = None` is shard-local (a table every shard has, such as per-shard
counters) and is queried shard by shard with `for_shard(shard)`. A query that names neither
raises `ShardingError`: a forgotten key is a bug, never a silent read of `default`.
"""

from typing import Any, ClassVar

from django.db import models
from django.db.models.functions import Cast

# The database's twin of shards.routing.slot_for_key: the low 12 bits of the first 8 bytes of
# MD5(key) are hex digits 14-16 of md5(). Created on every shard by users' migration 0005.
KEY_SLOT_SQL = """
CREATE OR REPLACE FUNCTION key_slot(key text) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || substr(md5(key), 14, 3))::bit(12)::int
"""


def slot_field(key_field: str) -> models.GeneratedField:
    """The slot of the row's shard key, stored by the database (`key_slot(key::text)`).
    Resharding moves rows by it: publications filter on it and fences check it, and lists
    skip the slots a shard holds copies of but does not own (shards.slot_map)."""
    return models.GeneratedField(
        expression=models.Func(
            Cast(key_field, models.TextField()),
            function="key_slot",
            output_field=models.SmallIntegerField(),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
        editable=False,
    )


class ShardedManager(models.Manager):
    def for_key(self, key: Any) -> models.QuerySet:
        """Rows whose shard key is `key`, on that key's shard (Django's `db_manager` hints
        reach the router with every query of the queryset)."""
        return self.db_manager(hints={"shard_key": key}).get_queryset()

    def for_shard(self, shard) -> models.QuerySet:
        """Rows of one shard (a `shards.topology.Shard`), for shard-local tables and
        scans that visit every shard."""
        return self.db_manager(hints={"shard": shard}).get_queryset()


class ShardedModel(models.Model):
    # The attribute whose value picks the shard, or None for a shard-local table.
    shard_key: ClassVar[str | None] = None

    objects = ShardedManager()

    class Meta:
        abstract = True

    @classmethod
    def routing_key(cls, value: Any) -> str:
        """The text the shard key's value hashes as: the field's Python value as text (a
        UUID in its canonical lower-case, hyphenated form). Override for keys with a
        canonical form of their own."""
        return str(cls._meta.get_field(cls.shard_key).to_python(value))


def is_sharded(model: type[models.Model]) -> bool:
    return issubclass(model, ShardedModel)


class SlotMap(models.Model):
    """One version of the slot -> shard map, in the control database (`default`).

    Shard hosts are configuration (settings.SHARDING_COUNT and the URLs); which shard owns
    which slot is data, so that resharding can change it while the API serves: the highest
    version is the map in force (shards.slot_map)."""

    version = models.PositiveIntegerField(primary_key=True)
    owners = models.JSONField(help_text="The owner shard of each slot, slot 0 first.")
    foreign = models.JSONField(
        default=dict,
        help_text="Shard id -> slots whose rows it may hold without owning them (copies of a"
        " move in progress, not yet cleaned up): lists there skip them.",
    )
    positions = models.JSONField(
        default=dict,
        help_text="Shard id -> WAL position (int) its replica must have replayed before it"
        " serves reads: the position a move's target reached when it took its slots.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "slot_map"

    def __str__(self) -> str:
        return f"slot map v{self.version}"

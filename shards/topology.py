"""The shards this process knows, turned from settings into plain objects once."""

import uuid
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from shards import routing, slot_map


@dataclass(frozen=True)
class Shard:
    id: int
    primary_alias: str
    replica_alias: str

    @property
    def name(self) -> str:
        return f"shard-{self.id}"


@cache
def all_shards() -> tuple[Shard, ...]:
    return tuple(
        Shard(id=i, primary_alias=f"shard_{i}", replica_alias=f"shard_{i}_replica")
        for i in range(settings.SHARDING_COUNT)
    )


def shard_by_id(shard_id: int) -> Shard:
    return all_shards()[shard_id]


def shard_for_key(key: str) -> Shard:
    """The shard that owns a routing key (already in its canonical text form) now: its slot's
    owner in the slot map in force (shards.slot_map)."""
    return all_shards()[slot_map.current().owners[routing.slot_for_key(key)]]


def shard_for_user_id(user_id: str | uuid.UUID) -> Shard:
    """Raises ValueError when `user_id` is not a UUID."""
    return shard_for_key(routing.canonical_user_id(user_id))


def shard_for_email(email: str) -> Shard:
    return shard_for_key(routing.canonical_email(email))


@cache
def _shards_by_alias() -> dict[str, Shard]:
    return {
        alias: shard
        for shard in all_shards()
        for alias in (shard.primary_alias, shard.replica_alias)
    }


def shard_for_alias(alias: str) -> Shard | None:
    """The shard a database alias (primary or replica) belongs to; None for `default`."""
    return _shards_by_alias().get(alias)


def is_shard_alias(alias: str) -> bool:
    return alias in _shards_by_alias()

"""Django database router for sharded models.

A sharded model (Meta option via SHARDED_APPS) has no default database: every query must
name its alias with `.using(...)`, which Django honours without asking the router. So the
router is only reached when code forgot the shard, and then it fails loudly instead of
reading `default`. Django's own apps live on `default` only; sharded tables live on every
shard primary and never on `default`; replicas get their schema by replication.
"""

from shards.errors import ShardingError
from shards.topology import is_shard_alias

SHARDED_APPS = frozenset({"users"})


def _is_sharded(model) -> bool:
    return model._meta.app_label in SHARDED_APPS


class ShardRouter:
    def db_for_read(self, model, **hints):
        if _is_sharded(model):
            instance = hints.get("instance")
            if instance is not None and instance._state.db:
                return instance._state.db
            raise ShardingError(f"read of {model.__name__} without a shard: use .using(alias)")
        return "default"

    def db_for_write(self, model, **hints):
        if _is_sharded(model):
            instance = hints.get("instance")
            if instance is not None and instance._state.db:
                return instance._state.db
            raise ShardingError(f"write of {model.__name__} without a shard: use .using(alias)")
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return obj1._state.db == obj2._state.db

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db.endswith("_replica"):
            return False
        if app_label in SHARDED_APPS:
            return is_shard_alias(db)
        return db == "default"

"""Django database router for sharded models: it chooses the shard, and the database in it.

A sharded model (`shards.models.ShardedModel`) names its shard key; a query finds its shard
from the hints Django passes with it: the `shard_key` or `shard` hint that
`Model.objects.for_key(key)` / `for_shard(shard)` set, or the `instance` hint (a model
instance of a sharded model: its shard key's value; a related manager passes the instance it
hangs from, which lives on the same shard). Writes go to the shard's primary. Reads go to its
replica when the health view says the replica is usable and it has replayed the request's
consistency token for that shard (`shards.consistency.request_positions`), else to the
primary. A query with no shard in its hints raises ShardingError instead of reading
`default`. `shards.access` may pin one alias of the shard for a retry after a failure
(`pinned`); the router honours it.

Django's own apps live on `default` only; sharded tables live on every shard primary and
never on `default`; replicas get their schema by replication.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.apps import apps
from django.db import models

from shards.consistency import required_position
from shards.errors import ShardingError
from shards.health import monitor
from shards.models import is_sharded
from shards.topology import Shard, is_shard_alias, shard_for_alias, shard_for_key

_pinned: ContextVar[str | None] = ContextVar("pinned_alias", default=None)


@contextmanager
def pinned(alias: str) -> Iterator[None]:
    """Make queries of `alias`'s shard use `alias` (a retry on the primary after a replica
    failed, or a read that decides a write)."""
    reset = _pinned.set(alias)
    try:
        yield
    finally:
        _pinned.reset(reset)


def replica_can_serve(shard: Shard, min_lsn: int | None) -> bool:
    """Whether the replica is usable and has replayed `min_lsn` (as last seen)."""
    state = monitor.state(shard.id)
    if not state.replica_ok:
        return False
    return min_lsn is None or (state.replica_replay_lsn or 0) >= min_lsn


def read_alias(shard: Shard) -> str:
    """Where a read of `shard` goes now: the pinned alias, else the replica when it may
    serve the request's token, else the primary."""
    pin = _pinned.get()
    if pin is not None and shard_for_alias(pin) == shard:
        return pin
    if replica_can_serve(shard, required_position(shard.id)):
        return shard.replica_alias
    return shard.primary_alias


def shard_of_instance(instance: models.Model) -> Shard:
    model = type(instance)
    if model.shard_key is None:
        shard = shard_for_alias(instance._state.db or "")
        if shard is None:
            raise ShardingError(f"{model.__name__} row without a shard: use for_shard()")
        return shard
    field = model._meta.get_field(model.shard_key)
    return shard_for_key(model.routing_key(getattr(instance, field.attname)))


def shard_from_hints(model: type[models.Model], hints: dict) -> Shard:
    if "shard" in hints:
        return hints["shard"]
    if "shard_key" in hints:
        return shard_for_key(model.routing_key(hints["shard_key"]))
    instance = hints.get("instance")
    if instance is not None and is_sharded(type(instance)):
        return shard_of_instance(instance)
    raise ShardingError(f"query of {model.__name__} without a shard: use for_key() or for_shard()")


def _is_sharded_table(app_label: str, model_name: str | None) -> bool:
    """Whether a migration of this app (and model) runs on the shards. Asked of the app
    registry: migrations pass historical models, which do not keep their abstract bases.
    An operation with no model (RunSQL) follows its app: an app's models are all sharded
    or all not."""
    try:
        if model_name is not None:
            return is_sharded(apps.get_model(app_label, model_name))
        return any(is_sharded(model) for model in apps.get_app_config(app_label).get_models())
    except LookupError:
        return False


class ShardRouter:
    def db_for_read(self, model, **hints):
        if not is_sharded(model):
            return "default"
        return read_alias(shard_from_hints(model, hints))

    def db_for_write(self, model, **hints):
        if not is_sharded(model):
            return "default"
        return shard_from_hints(model, hints).primary_alias

    def allow_relation(self, obj1, obj2, **hints):
        sharded = is_sharded(type(obj1)), is_sharded(type(obj2))
        if not any(sharded):
            return True
        if not all(sharded):
            return False  # a sharded row and a `default` row never share a database
        return shard_of_instance(obj1) == shard_of_instance(obj2)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db.endswith("_replica"):
            return False
        if _is_sharded_table(app_label, model_name):
            return is_shard_alias(db)
        return db == "default"

"""The database router: sharded tables on every shard primary, never on default."""

import pytest
from django.db import connections

from shards.errors import ShardingError
from shards.router import ShardRouter
from shards.topology import all_shards
from users.models import User

pytestmark = pytest.mark.cluster


def test_a_query_on_a_sharded_model_without_a_shard_is_an_error():
    with pytest.raises(ShardingError):
        list(User.objects.all())
    with pytest.raises(ShardingError):
        User.objects.create(name="x", email="x@example.com")


def test_django_own_apps_migrate_on_default_only():
    router = ShardRouter()
    assert router.allow_migrate("default", "auth")
    assert not router.allow_migrate("shard_0", "auth")
    assert not router.allow_migrate("shard_0_replica", "auth")


def test_users_migrate_on_every_shard_primary_and_never_on_default_or_replicas():
    router = ShardRouter()
    assert not router.allow_migrate("default", "users")
    for shard in all_shards():
        assert router.allow_migrate(shard.primary_alias, "users")
        assert not router.allow_migrate(shard.replica_alias, "users")


def test_the_users_table_exists_on_every_shard_and_replica_and_not_on_default(shards_db):
    assert "users" not in connections["default"].introspection.table_names()
    for shard in all_shards():
        for alias in (shard.primary_alias, shard.replica_alias):
            assert "users" in connections[alias].introspection.table_names(), alias

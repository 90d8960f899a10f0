"""The database router: it chooses the shard of a sharded model from its shard key, the
primary for writes, the replica for reads when it may serve them; sharded tables live on
every shard primary, never on default."""

import uuid

import pytest
from django.db import connections, router

from shards.consistency import positions_of_request
from shards.errors import ShardingError
from shards.health import monitor
from shards.router import ShardRouter, pinned
from shards.topology import all_shards, shard_for_email, shard_for_user_id
from users.models import EmailLookup, User, UserCount

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


def test_writes_go_to_the_primary_of_the_shard_the_id_hashes_to(shards_db):
    for _ in range(20):
        user_id = uuid.uuid4()
        shard = shard_for_user_id(user_id)
        assert router.db_for_write(User, instance=User(id=user_id)) == shard.primary_alias
        assert router.db_for_write(User, shard_key=user_id) == shard.primary_alias
        assert router.db_for_write(User, shard_key=str(user_id).upper()) == shard.primary_alias


def test_reads_go_to_the_replica_of_that_shard_when_it_is_healthy(shards_db):
    monitor.refresh()
    for _ in range(20):
        user_id = uuid.uuid4()
        shard = shard_for_user_id(user_id)
        assert monitor.state(shard.id).replica_ok
        assert router.db_for_read(User, instance=User(id=user_id)) == shard.replica_alias
        assert User.objects.for_key(user_id).db == shard.replica_alias


def test_a_read_with_a_token_the_replica_has_not_replayed_goes_to_the_primary(shards_db):
    user_id = uuid.uuid4()
    shard = shard_for_user_id(user_id)
    replayed = monitor.state(shard.id).replica_replay_lsn
    with positions_of_request({shard.id: replayed + 1}):
        assert User.objects.for_key(user_id).db == shard.primary_alias
    with positions_of_request({shard.id: replayed}):
        assert User.objects.for_key(user_id).db == shard.replica_alias


def test_a_pinned_alias_of_the_shard_wins_and_another_shards_pin_is_ignored(shards_db):
    user_id = uuid.uuid4()
    shard = shard_for_user_id(user_id)
    other = next(s for s in all_shards() if s != shard)
    with pinned(shard.primary_alias):
        assert User.objects.for_key(user_id).db == shard.primary_alias
    with pinned(other.primary_alias):
        assert User.objects.for_key(user_id).db == shard.replica_alias


def test_the_email_lookup_routes_by_the_canonical_email(shards_db):
    shard = shard_for_email("Anna@Bücher.example")
    assert EmailLookup.objects.for_key("anna@xn--bcher-kva.example").db == shard.replica_alias
    assert router.db_for_write(EmailLookup, shard_key="ANNA@bücher.example") == shard.primary_alias


def test_a_shard_local_table_is_queried_shard_by_shard(shards_db):
    for shard in all_shards():
        assert UserCount.objects.for_shard(shard).db == shard.replica_alias
    with pytest.raises(ShardingError):
        list(UserCount.objects.all())


def test_orm_writes_and_reads_land_on_the_key_shard_and_nowhere_else(shards_db):
    user_id = uuid.uuid4()
    shard = shard_for_user_id(user_id)
    from django.utils import timezone

    now = timezone.now()
    User.objects.for_key(user_id).create(
        id=user_id, name="Orm", email="orm@example.com", created_at=now, updated_at=now
    )
    for other in all_shards():
        found = User.objects.for_shard(other).using(other.primary_alias).filter(id=user_id)
        assert found.exists() == (other == shard)
    with pinned(shard.primary_alias):
        assert User.objects.for_key(user_id).get(id=user_id).name == "Orm"


def test_relations_are_allowed_within_a_shard_only(shards_db):
    # shard_for_user_id rereads the slot map (control database) once it is SLOT_MAP_REFRESH old.
    a, b = uuid.uuid4(), uuid.uuid4()
    while shard_for_user_id(a) == shard_for_user_id(b):
        b = uuid.uuid4()
    r = ShardRouter()
    assert r.allow_relation(User(id=a), User(id=a))
    assert not r.allow_relation(User(id=a), User(id=b))

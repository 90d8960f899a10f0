"""A second sharded model (tests/sharded_messages: a user's messages, co-located with the
user) works through the ORM and the router with nothing in shards/ changed for it."""

import uuid

import psycopg
import pytest
from django.db import connections

from shards.consistency import lsn_to_int, positions_of_request
from shards.health import conninfo, monitor
from shards.topology import all_shards, shard_for_user_id
from tests.conftest import wait_for_replicas
from tests.sharded_messages.models import Message
from tests.test_api import USERS, create
from users.models import User

pytestmark = pytest.mark.cluster


def _primary_lsn(alias: str) -> int:
    with psycopg.connect(**{**conninfo(alias), "autocommit": True}) as conn:
        return lsn_to_int(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def _messages_on(shard) -> list[str]:
    with connections[shard.primary_alias].cursor() as cursor:
        cursor.execute("SELECT body FROM messages ORDER BY created_at")
        return [row[0] for row in cursor.fetchall()]


def test_messages_are_created_on_their_users_shard(client, shards_db):
    user_id = uuid.UUID(create(client).json()["id"])
    shard = shard_for_user_id(user_id)
    for n in range(3):
        Message.objects.for_key(user_id).create(user_id=user_id, body=f"hello {n}")
    for other in all_shards():
        assert _messages_on(other) == ([f"hello {n}" for n in range(3)] if other == shard else [])


def test_messages_are_read_from_the_replica_once_it_holds_the_token(client, shards_db):
    user_id = uuid.UUID(create(client).json()["id"])
    shard = shard_for_user_id(user_id)
    Message.objects.for_key(user_id).create(user_id=user_id, body="replicated")
    written = _primary_lsn(shard.primary_alias)
    wait_for_replicas()
    monitor.refresh()
    with positions_of_request({shard.id: written}):
        messages = Message.objects.for_key(user_id).filter(user_id=user_id)
        assert messages.db == shard.replica_alias
        assert [m.body for m in messages] == ["replicated"]


def test_a_users_messages_are_listed_through_the_relation(client, shards_db):
    user_id = uuid.UUID(create(client).json()["id"])
    for n in range(3):
        Message.objects.for_key(user_id).create(user_id=user_id, body=f"m{n}")
    wait_for_replicas()
    monitor.refresh()
    user = User.objects.for_key(user_id).get(id=user_id)
    assert [m.body for m in user.messages.order_by("created_at")] == ["m0", "m1", "m2"]


def test_deleting_the_user_through_the_api_deletes_its_messages_on_its_shard(client, shards_db):
    keep = uuid.UUID(create(client).json()["id"])
    gone = uuid.UUID(create(client).json()["id"])
    Message.objects.for_key(keep).create(user_id=keep, body="kept")
    Message.objects.for_key(gone).create(user_id=gone, body="deleted with its user")
    assert client.delete(f"{USERS}{gone}").status_code == 204
    remaining = [body for shard in all_shards() for body in _messages_on(shard)]
    assert remaining == ["kept"]

"""The pieces of online resharding on the real cluster's test databases: the plan, the
database's slot function, the write fence as the API meets it, lists during a move, tokens
that carry the map version, and each shard's record of its own id. The whole move under
load, interrupted and aborted, runs on a cluster of its own: tests/test_reshard.py."""

import threading
import time
import uuid

import psycopg
import pytest

from resharding import fence, identity
from resharding.plan import incoming, moves_between, outgoing, target_owners
from resharding.tables import moved_tables
from shards import routing, slot_map
from shards.consistency import decode_token, encode_token
from shards.errors import SlotMoving
from shards.health import conninfo
from shards.models import SlotMap
from shards.topology import shard_by_id, shard_for_email, shard_for_user_id
from users import selectors, services
from users.models import EmailLookup, User

pytestmark = pytest.mark.cluster


def _primary(shard_id: int) -> psycopg.Connection:
    return psycopg.connect(**{**conninfo(shard_by_id(shard_id).primary_alias), "autocommit": True})


@pytest.fixture
def fenced(shards_db):
    """fenced(shard_id, slots, lease): fence slots on a shard's test database; all lifted
    afterwards."""
    raised: list[tuple[int, list[int]]] = []

    def raise_it(shard_id: int, slots: list[int], lease: float = 30.0) -> None:
        with _primary(shard_id) as conn:
            fence.prepare(conn)
            fence.raise_fence(conn, moved_tables(), slots, lease)
        raised.append((shard_id, slots))

    yield raise_it
    for shard_id, slots in raised:
        with _primary(shard_id) as conn:
            fence.lift(conn, moved_tables(), slots)


def test_growing_from_5_to_6_shards_moves_682_slots_all_to_the_new_shard():
    moves = moves_between(slot_map.Owners(1, routing.slot_map(5)), target_owners(6))
    assert {m.target for m in moves} == {5}
    assert sorted(m.source for m in moves) == [0, 1, 2, 3, 4]
    assert sum(len(m.slots) for m in moves) == 682
    assert len(incoming(moves)[5]) == 682
    back = moves_between(slot_map.Owners(2, routing.slot_map(6)), target_owners(5))
    assert outgoing(back) == {5: incoming(moves)[5]}


def test_the_database_computes_the_same_slot_as_routing(shards_db):
    keys = [str(uuid.uuid4()) for _ in range(300)] + [f"u{i}@example.com" for i in range(300)]
    with _primary(0) as conn:
        slots = conn.execute("SELECT k, key_slot(k) FROM unnest(%s::text[]) AS k", [keys])
        assert dict(slots.fetchall()) == {k: routing.slot_for_key(k) for k in keys}


def test_a_write_that_meets_the_fence_waits_and_goes_through_when_it_is_lifted(
    fresh_map, fenced, settings
):
    settings.RESHARD_WRITE_WAIT = 5.0
    email = f"fenced-{uuid.uuid4().hex}@example.com"
    slot = routing.slot_for_key(email)
    fenced(shard_for_email(email).id, [slot])
    result: dict = {}

    def create() -> None:
        started = time.monotonic()
        result["user"], _ = services.create_user(name="Fenced", email=email)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=create)
    thread.start()
    time.sleep(0.6)
    assert "user" not in result, "the write went through the fence"
    with _primary(shard_for_email(email).id) as conn:
        fence.lift(conn, moved_tables(), [slot])
    thread.join(timeout=10)
    assert result["seconds"] >= 0.5
    user_id = result["user"].id
    assert User.objects.for_key(user_id).filter(id=user_id).exists()


def test_a_fence_that_outlasts_the_wait_answers_slot_moving_and_writes_nothing(
    fresh_map, fenced, settings
):
    settings.RESHARD_WRITE_WAIT = 0.3
    user = services.create_user(name="Before", email=f"b-{uuid.uuid4().hex}@example.com")[0]
    fenced(shard_for_user_id(user.id).id, [routing.slot_for_key(str(user.id))])
    with pytest.raises(SlotMoving):
        services.update_user(user_id=user.id, name="After")
    with pytest.raises(SlotMoving):
        services.delete_user(user_id=user.id)
    row = User.objects.for_key(user.id).get(id=user.id)
    assert row.name == "Before"


def test_a_fence_lapses_by_itself_when_its_lease_runs_out(fresh_map, fenced):
    user = services.create_user(name="Before", email=f"l-{uuid.uuid4().hex}@example.com")[0]
    fenced(shard_for_user_id(user.id).id, [routing.slot_for_key(str(user.id))], lease=0.3)
    time.sleep(0.5)
    started = time.monotonic()
    services.update_user(user_id=user.id, name="After")
    assert time.monotonic() - started < 0.5


def test_a_list_page_skips_the_foreign_slots_the_map_names_for_each_shard(fresh_map):
    users = [
        services.create_user(name=f"U{i}", email=f"f{i}-{uuid.uuid4().hex}@example.com")[0]
        for i in range(12)
    ]
    shard = shard_for_user_id(users[0].id)
    on_shard = [u for u in users if shard_for_user_id(u.id) == shard]
    hidden = routing.slot_for_key(str(on_shard[0].id))
    latest = SlotMap.objects.order_by("-version").first()
    SlotMap.objects.create(
        version=latest.version + 1, owners=latest.owners, foreign={str(shard.id): [hidden]}
    )
    slot_map.refresh()
    listed = {row.id for row in selectors.list_users(limit=50).results}
    assert on_shard[0].id not in listed
    assert {u.id for u in on_shard[1:] if routing.slot_for_key(str(u.id)) != hidden} <= listed


def test_a_token_from_a_newer_map_makes_the_process_reread_it(fresh_map, settings, monkeypatch):
    settings.SLOT_MAP_REFRESH = 3600  # without the token, this process would keep its copy
    latest = SlotMap.objects.order_by("-version").first()
    SlotMap.objects.create(version=latest.version + 1, owners=latest.owners)
    newest = slot_map.refresh()
    token = encode_token({0: 1})  # signed by a worker that runs the newest map
    assert token.split(":")[0].endswith(f".v{newest.version}")
    older = slot_map.Owners(latest.version, tuple(latest.owners))
    monkeypatch.setattr(slot_map, "_cached", older)  # a worker still on the older map
    decode_token(token)
    assert slot_map.current().version == newest.version


def test_each_shard_database_records_its_shard_id_and_a_mismatch_is_reported(shards_db):
    assert identity.problems() == []
    assert identity.recorded("shard_1") == 1
    dbname = conninfo("shard_1")["dbname"]
    with _primary(1) as conn:
        conn.execute(f"ALTER DATABASE \"{dbname}\" SET messenger.shard_id = '3'")
    try:
        assert identity.problems() == [
            "shard_1 is configured as shard 1, but its database says it is shard 3"
        ]
    finally:
        identity.record("shard_1")
    assert identity.problems() == []


def test_moved_tables_are_every_sharded_table_with_a_shard_key():
    names = {table.name: table for table in moved_tables()}
    assert set(names) >= {"users", "email_lookup"}
    assert names["users"].identity_index == "users_slot_id"
    assert "slot" not in names["users"].columns
    assert EmailLookup._meta.get_field("slot").generated

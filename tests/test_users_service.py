"""Business rules of user operations, called without HTTP, on the real shards."""

import threading
import uuid
from contextlib import ExitStack

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from shards.topology import all_shards, shard_for_email, shard_for_user_id
from users import email_lookup, services
from users.email_lookup import EmailTaken

pytestmark = pytest.mark.cluster


def _shards_holding(user_id: uuid.UUID) -> list[int]:
    holding = []
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT 1 FROM users WHERE id = %s", [user_id])
            if cursor.fetchone():
                holding.append(shard.id)
    return holding


def _claim(email: str) -> uuid.UUID | None:
    """The user id that holds the claim on `email`, or None."""
    with connections[shard_for_email(email).primary_alias].cursor() as cursor:
        cursor.execute("SELECT user_id FROM email_lookup WHERE email = %s", [email.lower()])
        row = cursor.fetchone()
    return row[0] if row else None


def test_a_created_user_lives_on_the_shard_its_id_hashes_to_and_nowhere_else(shards_db):
    for n in range(10):
        user, positions = services.create_user(name=f"U {n}", email=f"u{n}@example.com")
        assert _shards_holding(user.id) == [shard_for_user_id(user.id).id]
        assert shard_for_user_id(user.id).id in positions


def test_a_new_user_lives_beside_its_email_and_is_created_in_one_statement(shards_db):
    for n in range(10):
        email = f"beside{n}@example.com"
        with ExitStack() as stack:
            captured = [
                stack.enter_context(CaptureQueriesContext(connections[shard.primary_alias]))
                for shard in all_shards()
            ]
            user, positions = services.create_user(name=f"B {n}", email=email)
        shard = shard_for_email(email)
        assert shard_for_user_id(user.id) == shard
        assert _shards_holding(user.id) == [shard.id]
        assert _claim(email) == user.id
        assert [len(queries) for queries in captured] == [int(s == shard) for s in all_shards()]
        assert positions[shard.id] > 0


def test_a_create_whose_email_is_held_runs_the_claim_protocol_and_writes_nothing(shards_db):
    ghost = uuid.uuid4()
    email_lookup.claim("held-by-ghost@example.com", ghost)
    with pytest.raises(EmailTaken):
        services.create_user(name="Second", email="held-by-ghost@example.com")
    assert _claim("held-by-ghost@example.com") == ghost
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users")
            assert cursor.fetchone()[0] == 0


def test_create_claims_the_email_on_the_emails_shard(shards_db):
    user, _ = services.create_user(name="Ann", email="Ann@Example.com")
    assert _claim("ann@example.com") == user.id


def test_the_same_email_in_another_case_is_refused_across_shards(shards_db):
    first, _ = services.create_user(name="A", email="same@example.com")
    with pytest.raises(EmailTaken):
        services.create_user(name="B", email="SAME@example.COM")
    # Whatever shard the second id would have used, it holds no user.
    counts = 0
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users")
            counts += cursor.fetchone()[0]
    assert counts == 1


def test_concurrent_creates_with_one_email_give_exactly_one_user_in_every_round(shards_db):
    # PostgreSQL's ON CONFLICT handles its arbiter indexes only: while the claim named
    # (email), the other unique index, (slot, email), raised a unique violation (a 500) in
    # about one round in fifteen of eight racers.
    rounds, racers = 40, 8
    outcomes: list[list[str]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(racers)

    def race(n: int) -> None:
        try:
            for round_no in range(rounds):
                barrier.wait()
                try:
                    services.create_user(name=f"Racer {n}", email=f"race-{round_no}@example.com")
                    outcomes[round_no].append("created")
                except EmailTaken:
                    outcomes[round_no].append("taken")
                except Exception as exc:  # what the test is for: nothing else may come out
                    outcomes[round_no].append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in outcomes:
        assert sorted(outcome) == ["created"] + ["taken"] * (racers - 1)


def test_a_claim_left_by_a_crashed_create_does_not_lock_the_email_forever(shards_db, settings):
    ghost = uuid.uuid4()
    email_lookup.claim("ghost@example.com", ghost)  # the create died before its user row
    with pytest.raises(EmailTaken) as young:
        services.create_user(name="Too soon", email="ghost@example.com")
    assert young.value.pending
    with connections[shard_for_email("ghost@example.com").primary_alias].cursor() as cursor:
        cursor.execute(
            "UPDATE email_lookup SET claimed_at = now() - interval '1 hour' WHERE email = %s",
            ["ghost@example.com"],
        )
    user, _ = services.create_user(name="Later", email="ghost@example.com")
    assert _claim("ghost@example.com") == user.id


def test_a_claim_whose_user_is_gone_is_taken_over_once_expired(shards_db):
    user, _ = services.create_user(name="Gone", email="gone@example.com")
    shard = shard_for_user_id(user.id)
    with connections[shard.primary_alias].cursor() as cursor:
        cursor.execute("DELETE FROM users WHERE id = %s", [user.id])  # lookup not cleaned
    with pytest.raises(EmailTaken):
        services.create_user(name="Too soon", email="gone@example.com")
    with connections[shard_for_email("gone@example.com").primary_alias].cursor() as cursor:
        cursor.execute("UPDATE email_lookup SET claimed_at = now() - interval '1 hour'")
    again, _ = services.create_user(name="Again", email="gone@example.com")
    assert _claim("gone@example.com") == again.id


def test_changing_the_email_moves_the_claim_and_frees_the_old_email(shards_db):
    user, _ = services.create_user(name="Mover", email="old@example.com")
    updated, _ = services.update_user(user_id=user.id, email="new@example.com")
    assert updated.email == "new@example.com"
    assert _claim("old@example.com") is None
    assert _claim("new@example.com") == user.id
    other, _ = services.create_user(name="Reuser", email="old@example.com")
    assert other.id != user.id


def test_a_claim_still_held_by_a_live_user_is_never_taken_over(shards_db):
    user, _ = services.create_user(name="Old", email="held@example.com")
    with connections[shard_for_email("held@example.com").primary_alias].cursor() as cursor:
        cursor.execute("UPDATE email_lookup SET claimed_at = now() - interval '1 hour'")
    with pytest.raises(EmailTaken) as taken:
        services.create_user(name="Thief", email="HELD@example.com")
    assert not taken.value.pending
    assert _claim("held@example.com") == user.id


def test_a_create_slower_than_half_the_claim_timeout_checks_its_claim(shards_db, settings):
    settings.EMAIL_CLAIM_TIMEOUT = 0  # every create counts as slow: the check runs
    user, _ = services.create_user(name="Slow", email="slow@example.com")
    assert _claim("slow@example.com") == user.id


def test_changing_the_email_to_a_taken_one_changes_nothing(shards_db):
    a, _ = services.create_user(name="A", email="a@example.com")
    services.create_user(name="B", email="b@example.com")
    with pytest.raises(EmailTaken):
        services.update_user(user_id=a.id, name="A2", email="B@example.com")
    with connections[shard_for_user_id(a.id).primary_alias].cursor() as cursor:
        cursor.execute("SELECT name, email FROM users WHERE id = %s", [a.id])
        assert cursor.fetchone() == ("A", "a@example.com")


def test_update_changes_only_the_given_fields_and_moves_updated_at(shards_db):
    user, _ = services.create_user(name="Name", email="keep@example.com")
    updated, _ = services.update_user(user_id=user.id, name="New name")
    assert (updated.name, updated.email) == ("New name", "keep@example.com")
    assert updated.updated_at > user.updated_at
    assert updated.created_at == user.created_at


def test_updating_or_deleting_a_missing_user_says_not_found(shards_db):
    with pytest.raises(services.UserNotFound):
        services.update_user(user_id=uuid.uuid4(), name="x")
    with pytest.raises(services.UserNotFound):
        services.delete_user(user_id=uuid.uuid4())


def test_delete_removes_the_row_and_releases_the_email(shards_db):
    user, _ = services.create_user(name="Bye", email="bye@example.com")
    services.delete_user(user_id=user.id)
    assert _shards_holding(user.id) == []
    assert _claim("bye@example.com") is None


def _all_claims() -> dict[str, uuid.UUID]:
    claims = {}
    for shard in all_shards():
        with connections[shard.primary_alias].cursor() as cursor:
            cursor.execute("SELECT email, user_id FROM email_lookup")
            claims.update(cursor.fetchall())
    return claims


def test_concurrent_email_changes_of_one_user_keep_its_claim_in_every_round(shards_db):
    """Six concurrent changes of one user's email, alternating between two addresses, in
    many rounds: after each round the address the row holds is claimed by the user, the
    other address is free, and nobody else can register the row's address."""
    user, _ = services.create_user(name="Flipper", email="flip-start@example.com")
    failures = []
    for round_ in range(30):
        emails = [f"flip-{round_}-a@example.com", f"flip-{round_}-b@example.com"]
        barrier = threading.Barrier(6)

        def change(n: int, emails=emails, barrier=barrier) -> None:
            barrier.wait()
            try:
                services.update_user(user_id=user.id, email=emails[n % 2])
            except EmailTaken:
                pass  # another change of the same user may hold the address a moment
            finally:
                connections.close_all()

        threads = [threading.Thread(target=change, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with connections[shard_for_user_id(user.id).primary_alias].cursor() as cursor:
            cursor.execute("SELECT email FROM users WHERE id = %s", [user.id])
            (held,) = cursor.fetchone()
        claims = _all_claims()
        if claims.get(held) != user.id or set(claims) != {held}:
            failures.append((round_, held, claims))
            break
        with pytest.raises(EmailTaken):
            services.create_user(name="Intruder", email=held.upper())
    assert failures == []

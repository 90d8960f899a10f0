"""`seed_users` loads users exactly as the API would have stored them."""

import io
import re

import pytest
from django.core.management import call_command
from django.db import connections

from shards.routing import shard_for_email, shard_for_user_id
from shards.topology import all_shards
from users.models import EmailLookup

pytestmark = pytest.mark.cluster

COUNT = 2_000


def _rows(alias: str, sql: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_seed_puts_every_user_on_its_hash_shard_and_its_email_claim_on_the_email_shard(shards_db):
    out = io.StringIO()
    # Small batches so several transactions per shard are exercised.
    call_command("seed_users", count=COUNT, batch=700, no_progress=True, stdout=out)
    assert f"seeded {COUNT:,} users" in out.getvalue()
    shards = all_shards()
    count = len(shards)

    users: dict[str, str] = {}
    for shard in shards:
        for user_id, email in _rows(shard.primary_alias, "SELECT id, email FROM users"):
            assert shard_for_user_id(user_id, count) == shard.id
            users[email] = str(user_id)
    assert len(users) == COUNT  # unique emails

    claims: dict[str, str] = {}
    for shard in shards:
        for email, user_id in _rows(shard.primary_alias, "SELECT email, user_id FROM email_lookup"):
            assert shard_for_email(email, count) == shard.id
            claims[email] = str(user_id)
    assert claims == users
    if any(field.name == "confirmed" for field in EmailLookup._meta.fields):
        for shard in shards:
            [(unconfirmed,)] = _rows(
                shard.primary_alias, "SELECT count(*) FROM email_lookup WHERE NOT confirmed"
            )
            assert unconfirmed == 0  # the user row exists: the claim is confirmed


def test_seed_keeps_stats_counters_exact_and_leaves_replicas_caught_up(shards_db):
    call_command("seed_users", count=COUNT, batch=1_000, no_progress=True, stdout=io.StringIO())
    total = 0
    for shard in all_shards():
        [(on_primary,)] = _rows(shard.primary_alias, "SELECT count(*) FROM users")
        [(counted,)] = _rows(shard.primary_alias, "SELECT coalesce(sum(n), 0) FROM user_counts")
        assert counted == on_primary
        # The command returns only once each replica has replayed the load.
        [(on_replica,)] = _rows(shard.replica_alias, "SELECT count(*) FROM users")
        [(lookups,)] = _rows(shard.replica_alias, "SELECT count(*) FROM email_lookup")
        [(lookups_primary,)] = _rows(shard.primary_alias, "SELECT count(*) FROM email_lookup")
        assert on_replica == on_primary
        assert lookups == lookups_primary
        total += on_primary
    assert total == COUNT


def test_seed_spreads_created_at_so_lists_are_realistic(shards_db):
    call_command("seed_users", count=500, days=30, no_progress=True, stdout=io.StringIO())
    spans = [
        _rows(
            shard.primary_alias,
            "SELECT extract(epoch FROM max(created_at) - min(created_at)),"
            " count(DISTINCT created_at), count(*) FROM users",
        )[0]
        for shard in all_shards()
    ]
    assert max(span for span, _, _ in spans) > 20 * 86_400
    assert sum(distinct for _, distinct, _ in spans) == sum(n for _, _, n in spans)


def test_seed_reports_progress_with_rate_and_eta_in_plain_lines_without_a_terminal(shards_db):
    err = io.StringIO()
    call_command(
        "seed_users", count=COUNT, batch=250, progress_every=0, stdout=io.StringIO(), stderr=err
    )
    lines = err.getvalue().splitlines()
    progress = re.compile(
        r"seeding: ([\d,]+) of 2,000 users \(\d+\.\d%\), [\d,]+ users per second, ETA \d\d:\d\d"
    )
    # progress_every=0: a line each time a shard commits its part of a batch.
    assert len(lines) == COUNT // 250 * len(all_shards())
    done = [int(progress.fullmatch(line)[1].replace(",", "")) for line in lines]
    assert done == sorted(done) and done[-1] == COUNT


def test_seed_without_progress_prints_no_progress_lines(shards_db):
    err = io.StringIO()
    call_command("seed_users", count=100, no_progress=True, stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""

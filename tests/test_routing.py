"""The shard of a key: pure, even, consistent, and the same in every process."""

import collections
import subprocess
import sys
import uuid

import pytest

from shards.routing import (
    SLOT_COUNT,
    canonical_user_id,
    shard_for_email,
    shard_for_key,
    shard_for_user_id,
    slot_map,
)

ONE_MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_keys() -> list[str]:
    rng = __import__("random").Random(20261125)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ONE_MILLION)]


def test_upper_case_and_lower_case_ids_route_to_the_same_shard():
    user_id = uuid.uuid4()
    lower, upper = str(user_id), str(user_id).upper()
    assert canonical_user_id(upper) == lower
    for count in (2, 5, 7):
        assert shard_for_user_id(upper, count) == shard_for_user_id(lower, count)
        assert shard_for_user_id(user_id, count) == shard_for_user_id(lower, count)


def test_emails_route_case_insensitively():
    assert shard_for_email(" John@Example.COM ", 5) == shard_for_email("john@example.com", 5)


def test_a_malformed_id_is_refused_not_routed():
    with pytest.raises(ValueError):
        shard_for_user_id("not-a-uuid", 5)


def test_routing_is_identical_in_another_process_with_another_hash_seed():
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(200)]
    here = [shard_for_user_id(i, 5) for i in ids]
    code = (
        "import sys; from shards.routing import shard_for_user_id;"
        "print(','.join(str(shard_for_user_id(i, 5)) for i in sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *ids],
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=__import__("pathlib").Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    assert [int(x) for x in out.split(",")] == here


def test_slot_map_gives_every_shard_an_even_share_of_slots():
    for count in range(1, 17):
        sizes = collections.Counter(slot_map(count)).values()
        assert len(sizes) == count
        assert max(sizes) - min(sizes) <= 1
        assert sum(sizes) == SLOT_COUNT


@pytest.mark.slow
def test_one_million_ids_spread_within_two_percent_of_the_mean(million_keys):
    counts = collections.Counter(shard_for_key(key, 5) for key in million_keys)
    mean = ONE_MILLION / 5
    assert len(counts) == 5
    for shard, count in counts.items():
        assert abs(count - mean) / mean < 0.02, (shard, count)


@pytest.mark.slow
def test_going_from_five_to_six_shards_moves_at_most_a_sixth_plus_one_percent(million_keys):
    moved = [key for key in million_keys if shard_for_key(key, 5) != shard_for_key(key, 6)]
    assert len(moved) / ONE_MILLION <= 1 / 6 + 0.01
    # Every key that moves goes to the new shard: nothing shuffles between old shards.
    assert all(shard_for_key(key, 6) == 5 for key in moved)


@pytest.mark.slow
def test_going_from_five_to_four_shards_moves_only_the_removed_shards_keys(million_keys):
    for key in million_keys[:200_000]:
        before, after = shard_for_key(key, 5), shard_for_key(key, 4)
        assert before == after or before == 4


def test_routing_depends_on_the_shard_count_only():
    # Hosts never enter the computation: the same id maps to the same shard number
    # whatever addresses the shards have or in which order they are configured.
    key = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert shard_for_key(key, 5) == shard_for_key(key, 5)
    assert slot_map(5) is slot_map(5)

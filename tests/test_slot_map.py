"""Shard hosts are configuration, slot ownership is data: the versioned slot map of the
control database decides which shard owns a key, and every process follows a new version
within SLOT_MAP_REFRESH."""

import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from shards import routing, slot_map
from shards.models import SlotMap
from shards.topology import shard_for_user_id
from tests.conftest import API_PORT, ROOT, api_env

pytestmark = pytest.mark.cluster


def _move_slot_of(user_id: uuid.UUID, to_shard: int) -> None:
    owners = list(slot_map.current().owners)
    owners[routing.slot_for_key(str(user_id))] = to_shard
    latest = SlotMap.objects.order_by("-version").first()
    SlotMap.objects.create(version=latest.version + 1, owners=owners)


def test_a_fresh_install_starts_with_version_one_of_the_configured_map(fresh_map):
    SlotMap.objects.all().delete()
    owners = slot_map.refresh()
    assert owners.version == 1
    assert owners.owners == routing.slot_map(5)
    assert SlotMap.objects.get(version=1).owners == list(routing.slot_map(5))


def test_a_new_version_moves_a_key_to_its_new_owner_within_the_refresh_interval(fresh_map):
    user_id = uuid.uuid4()
    before = shard_for_user_id(user_id).id
    after = (before + 1) % 5
    _move_slot_of(user_id, after)
    deadline = time.monotonic() + 2
    while shard_for_user_id(user_id).id != after:
        assert time.monotonic() < deadline, "the new version was not seen"
        time.sleep(0.05)
    assert slot_map.current().version == 2


def test_a_version_that_names_an_unconfigured_shard_is_refused_and_the_old_one_kept(
    fresh_map, caplog
):
    user_id = uuid.uuid4()
    before = shard_for_user_id(user_id).id
    _move_slot_of(user_id, 7)
    assert slot_map.refresh().version == 1
    assert shard_for_user_id(user_id).id == before
    assert "only 5 shards are configured" in caplog.text


def test_a_slower_read_of_an_older_map_does_not_replace_a_newer_one(fresh_map, monkeypatch):
    # Two reads overlap (a request's at_least() beside the periodic one): the one begun
    # first read v1 before v2 was written, and finishes last.
    v1 = slot_map.current()
    v2 = slot_map.Owners(v1.version + 1, v1.owners)
    first_started, second_done = threading.Event(), threading.Event()
    calls = []

    def load() -> slot_map.Owners:
        calls.append(None)
        if len(calls) == 1:
            first_started.set()
            second_done.wait(5)
            return v1
        return v2

    monkeypatch.setattr(slot_map, "load", load)
    slower = threading.Thread(target=slot_map.refresh)
    slower.start()
    assert first_started.wait(5)
    assert slot_map.refresh() == v2
    second_done.set()
    slower.join(5)
    assert slot_map._cached == v2


def test_a_process_refuses_to_start_on_a_map_it_cannot_serve(fresh_map, settings):
    settings.SHARDING_COUNT = 3
    slot_map._cached = None
    try:
        with pytest.raises(ImproperlyConfigured, match=r"shards \[3, 4\]"):
            slot_map.refresh()
    finally:
        settings.SHARDING_COUNT = 5


def test_the_api_refuses_to_start_when_the_map_gives_slots_to_a_missing_shard(fresh_map):
    env = {**api_env(API_PORT + 7), "SHARDING_COUNT": "3", "LOG_LEVEL": "info"}
    server = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert server.returncode != 0
    assert "refusing to start" in server.stdout + server.stderr
    assert "only 3 shards are configured" in server.stdout + server.stderr

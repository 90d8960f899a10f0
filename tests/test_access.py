"""How shard access classifies failures."""

import pytest
from django.db import OperationalError
from psycopg_pool import PoolTimeout

from shards.access import run_read
from shards.errors import ServerBusy
from shards.health import monitor
from shards.topology import shard_by_id

pytestmark = pytest.mark.cluster


def test_waiting_too_long_for_a_pooled_connection_is_busy_not_down(shards_db):
    shard = shard_by_id(0)

    def pool_exhausted():
        try:
            raise PoolTimeout("couldn't get a connection after 10.00 sec")
        except PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc

    with pytest.raises(ServerBusy) as busy:
        run_read(shard, pool_exhausted)
    assert busy.value.code == "server_busy" and busy.value.shard_names == ["shard-0"]
    # Overload must not mark the databases down: that would fail every other request.
    assert monitor.is_up(shard.primary_alias) and monitor.is_up(shard.replica_alias)

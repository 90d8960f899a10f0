"""Which shard owns each slot now: the versioned slot map of the control database.

Contract: the owner of slot s is `current().owners[s]`, from the highest version of
`shards.models.SlotMap`. A fresh install starts with version 1, `routing.slot_map(N)` for
the configured shard count. Every process caches the map and rereads it when its copy is
older than SLOT_MAP_REFRESH seconds, so a new version reaches every worker within that time
(the first request after that pays one read of the control database). A running process
refuses a version it cannot serve (a shard it has no configuration for) and keeps the one it
has, loudly. A process whose control
database does not answer keeps the map it has; one that never read it routes by
`routing.slot_map(N)` and says so in its log. With SHARDING_ENABLED off every slot is
shard 0's and the control database is not asked.

`problems()` says why a configuration cannot serve a map: a shard that owns slots but is not
configured. A process refuses to start on one (ImproperlyConfigured at its first read; the
API's workers read the map before they accept: messenger/gunicorn.conf.py).
"""

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SynchronousOnlyOperation
from django.db import DatabaseError, IntegrityError

from shards import routing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owners:
    version: int
    owners: tuple[int, ...]
    # Shard id -> slots whose rows it may hold without owning them (a move's copies).
    foreign: Mapping[int, frozenset[int]] = field(default_factory=dict)
    # Shard id -> WAL position its replica must have replayed to serve a read.
    positions: Mapping[int, int] = field(default_factory=dict)

    def shards(self) -> set[int]:
        return set(self.owners)


_lock = threading.Lock()
_cached: Owners | None = None
_read_at = float("-inf")
# Reads of the map are numbered as they start; the one in place is the latest started. Two
# reads can overlap (a request's at_least() beside the periodic one): the slower one, begun
# earlier, may hold an older version and must not replace what the newer read put in place,
# or the worker routes a moved slot to its old shard again (seen as a 404 for a user just
# created during a move).
_reads = itertools.count(1)
_read_in_place = 0


def _configured() -> Owners:
    return Owners(0, routing.slot_map(settings.SHARDING_COUNT))


def load() -> Owners:
    """The map in force, read now (version 1 is written first on a fresh install)."""
    from shards.models import SlotMap

    latest = SlotMap.objects.order_by("-version").first()
    if latest is None:
        initial = routing.slot_map(settings.SHARDING_COUNT)
        try:
            latest = SlotMap.objects.create(version=1, owners=list(initial))
        except IntegrityError:  # another process wrote version 1 first
            latest = SlotMap.objects.get(version=1)
    if len(latest.owners) != routing.SLOT_COUNT:
        raise ValueError(f"slot map v{latest.version} has {len(latest.owners)} slots")
    return Owners(
        latest.version,
        tuple(latest.owners),
        {int(shard): frozenset(slots) for shard, slots in latest.foreign.items()},
        {int(shard): int(lsn) for shard, lsn in latest.positions.items()},
    )


def refresh() -> Owners:
    """Reread the map; keep the cached one if the control database does not answer."""
    global _cached, _read_at, _read_in_place
    if not settings.SHARDING_ENABLED:
        _cached, _read_at = _configured(), time.monotonic()
        return _cached
    read = next(_reads)
    try:
        owners = load()
    except (DatabaseError, SynchronousOnlyOperation) as exc:
        # The control database does not answer, or this thread may not ask it now (an
        # event loop runs in it): route by the map in hand rather than fail the request.
        if _cached is None:
            logger.error("slot map unreadable (%s): routing by slot_map(%d)", exc,
                         settings.SHARDING_COUNT)  # fmt: skip
            owners = _configured()
        else:
            logger.warning("slot map unreadable (%s): keeping v%d", exc, _cached.version)
            owners = _cached
    with _lock:
        if _cached is not None and read < _read_in_place:
            return _cached  # a read begun after this one is in place already
        if _cached is None and problems(owners):
            raise ImproperlyConfigured("; ".join(problems(owners)))
        if _cached is not None and owners.version != _cached.version:
            refused = problems(owners)
            if refused:
                logger.error("%s: keeping v%d", "; ".join(refused), _cached.version)
                owners = _cached
            else:
                logger.warning("slot map v%d replaces v%d", owners.version, _cached.version)
        _cached, _read_at, _read_in_place = owners, time.monotonic(), read
    return owners


_refreshing = False


def current() -> Owners:
    """The map in force, as this process last read it; reread when older than
    SLOT_MAP_REFRESH, by one caller at a time: under load, the requests that find it stale
    meanwhile route by the copy in hand instead of all asking the control database."""
    global _refreshing
    if _cached is None:
        return refresh()
    if time.monotonic() - _read_at > settings.SLOT_MAP_REFRESH and not _refreshing:
        _refreshing = True
        try:
            return refresh()
        finally:
            _refreshing = False
    return _cached


def at_least(version: int) -> Owners:
    """The map in force, reread first if `version` is newer than this process's copy (a
    client has seen a newer map: shards.consistency)."""
    owners = current()
    if version > owners.version:
        owners = refresh()
    return owners


def problems(owners: Owners) -> list[str]:
    """What keeps this process's configured shards from serving `owners` (empty: none)."""
    named = owners.shards() | set(owners.foreign)
    missing = sorted(shard for shard in named if shard >= settings.SHARDING_COUNT)
    if missing:
        return [
            f"slot map v{owners.version} gives slots to shards {missing}, but only"
            f" {settings.SHARDING_COUNT} shards are configured (SHARDING_COUNT)"
        ]
    return []

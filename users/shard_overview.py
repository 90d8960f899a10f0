"""The shard overview of the admin: health, lag, users and table sizes of every shard.

Shards have no model, so this is a plain view wrapped by the admin site (see messenger.urls)
rather than a ModelAdmin. It lives in the users app because what it counts and sizes are the
users app's tables. It probes every primary and replica when the page is opened: an
operator wants the state now, not the last background check."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from shards.access import run_read
from shards.health import ShardHealth, monitor
from shards.scatter import scatter
from shards.topology import Shard, all_shards
from users import user_queries


@dataclass(frozen=True)
class ShardSizes:
    user_count: int
    users_bytes: int
    email_lookup_bytes: int


@dataclass(frozen=True)
class ShardRow:
    shard: Shard
    health: ShardHealth
    sizes: ShardSizes | None
    primary_address: str
    replica_address: str

    @property
    def replica_status(self) -> str:
        if not self.health.replica_reachable:
            return "down"
        return "ok" if self.health.replica_ok else "lagging"


def _sizes(shard: Shard) -> ShardSizes:
    def fetch() -> ShardSizes:
        users_bytes, email_lookup_bytes = user_queries.table_sizes(shard)
        return ShardSizes(user_queries.count(shard), users_bytes, email_lookup_bytes)

    return run_read(shard, fetch)


def _address(alias: str) -> str:
    db = settings.DATABASES[alias]
    return f"{db['HOST']}:{db['PORT']}/{db['NAME']}"


def shard_rows() -> list[ShardRow]:
    """Every shard, in id order; `sizes` is None for a shard that did not answer."""
    states = monitor.refresh()
    sizes = scatter(all_shards(), _sizes)
    return [
        ShardRow(
            shard=shard,
            health=states.get(shard.id) or ShardHealth(shard_id=shard.id),
            sizes=None if isinstance(sizes[shard.id], Exception) else sizes[shard.id],
            primary_address=_address(shard.primary_alias),
            replica_address=_address(shard.replica_alias),
        )
        for shard in all_shards()
    ]


def shard_overview(request: HttpRequest) -> TemplateResponse:
    rows = shard_rows()
    context = {
        **admin.site.each_context(request),
        "title": "Shard overview",
        "rows": rows,
        "total_users": sum(row.sizes.user_count for row in rows if row.sizes),
        "complete": all(row.sizes for row in rows),
        "replica_max_lag": settings.REPLICA_MAX_LAG,
    }
    return TemplateResponse(request, "admin/shards/overview.html", context)

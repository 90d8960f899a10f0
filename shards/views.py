"""Health and shard statistics endpoints."""

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messenger.schema import STATS_EXAMPLE, ShardStatsSerializer
from shards.access import run_read
from shards.health import monitor
from shards.scatter import scatter
from shards.topology import Shard, all_shards


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers without touching any database."""
    return JsonResponse(
        {
            "status": "ok",
            "shards": settings.SHARDING_COUNT,
            "mode": "sharded" if settings.SHARDING_ENABLED else "single",
        }
    )


def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: probes every primary and replica now; 503 names what is down."""
    states = monitor.refresh()
    shards, failing = [], []
    for shard in all_shards():
        state = states.get(shard.id)
        primary_ok = bool(state and state.primary_ok)
        replica_ok = bool(state and state.replica_ok)
        if not primary_ok:
            failing.append(f"{shard.name}-primary")
        if not replica_ok:
            failing.append(f"{shard.name}-replica")
        shards.append(
            {
                "shard_id": shard.id,
                "shard_name": shard.name,
                "primary_ok": primary_ok,
                "replica_ok": replica_ok,
                "replica_lag_seconds": state.replica_lag_seconds if state else None,
            }
        )
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "shards": shards}
    return JsonResponse(body, status=503 if failing else 200)


def _user_count(shard: Shard) -> int:
    def fetch(alias: str) -> int:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT coalesce(sum(n), 0) FROM user_counts")
            return int(cursor.fetchone()[0])

    return run_read(shard, fetch)


class ShardStatsView(APIView):
    """Users per shard from trigger-maintained counters (exact, no table scan), read from
    each shard's replica when it is usable, in parallel, ordered by shard id."""

    @extend_schema(
        operation_id="shards_stats",
        tags=["shards"],
        summary="Users per shard",
        responses={
            200: OpenApiResponse(
                ShardStatsSerializer,
                description="Every shard's user count, in shard id order.",
                examples=[STATS_EXAMPLE],
            )
        },
    )
    def get(self, request: Request) -> Response:
        counts = scatter(all_shards(), _user_count)
        shards = []
        for shard in all_shards():
            count = counts[shard.id]
            state = monitor.state(shard.id)
            ok = not isinstance(count, Exception)
            shards.append(
                {
                    "shard_id": shard.id,
                    "shard_name": shard.name,
                    "user_count": count if ok else None,
                    "healthy": ok and state.primary_ok,
                    "replica_ok": state.replica_ok,
                    "replica_lag_seconds": state.replica_lag_seconds,
                }
            )
        return Response(
            {
                "total_users": sum(s["user_count"] or 0 for s in shards),
                "shard_count": len(shards),
                "complete": all(s["user_count"] is not None for s in shards),
                "shards": shards,
            }
        )

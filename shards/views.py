"""Health and shard statistics endpoints."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from shards.health import monitor
from shards.topology import all_shards


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
    """Readiness: probes the control database and every primary and replica now; 503 names
    what is down. Without the control database no API key can be checked and the slot map
    cannot follow a move."""
    control_ok = monitor.probe("default")
    states = monitor.refresh()
    shards, failing = [], [] if control_ok else ["control-db"]
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
    body = {
        "status": "ok" if not failing else "unavailable",
        "failing": failing,
        "control_db_ok": control_ok,
        "shards": shards,
    }
    return JsonResponse(body, status=503 if failing else 200)

"""Errors of the sharding layer."""

from django.conf import settings


class ShardingError(RuntimeError):
    """A sharded model was queried without naming its shard: a bug, never a silent read."""


class ShardUnavailable(Exception):
    """One or more shards could not serve the request; the API answers 503 naming them."""

    code = "shard_unavailable"

    def __init__(self, shard_names: list[str], message: str | None = None) -> None:
        self.shard_names = shard_names
        self.retry_after = settings.SHARD_RETRY_AFTER
        super().__init__(message or f"shard unavailable: {', '.join(shard_names)}")


class WriteOutcomeUnknown(ShardUnavailable):
    """The connection failed after the write was sent: it may or may not have committed.
    Retrying with the same data is safe (a create with the same email is detected)."""

    code = "write_outcome_unknown"


class ServerBusy(ShardUnavailable):
    """No pooled connection became free in time: this worker is overloaded, the database
    is not known to be down. Nothing was sent to it."""

    code = "server_busy"


class SlotMoving(ShardUnavailable):
    """The row's slot is being moved to another shard (resharding): the source database
    refused the write before it ran, nothing was written. Raised once the slot map has
    changed or the wait for it ran out; the caller reroutes and retries."""

    code = "slot_moving"

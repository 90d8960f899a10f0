"""Consistency tokens: read-your-writes across lagging replicas.

After a write commits, the shard's primary reports its WAL position
(`pg_current_wal_lsn()`); the client gets it back, signed, in the `X-Consistency-Token`
header and sends it with later requests. A read of that shard may use the replica only once
the replica has replayed that position, so a client never reads less than it wrote. One
token carries a position per shard, so a client can keep one token for everything it did.
The signature (Django's HMAC signer keyed by SECRET_KEY) makes the token opaque and
tamper-proof: a forged position cannot force reads onto the primaries.

A token also names the slot map version it was issued under. A process that meets a token
from a newer map than its own rereads the map before it routes the request: after a move,
a client that wrote a user on its new shard is never routed to the old one by a worker that
has not yet learnt the new map.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core import signing

from shards import slot_map

TOKEN_HEADER = "X-Consistency-Token"
_SIGNER = signing.Signer(salt="shards.consistency")

Positions = dict[int, int]
# The positions the current request's token carries: set once per request by
# messenger.middleware.ConsistencyTokenMiddleware, read by the router when it decides whether
# a replica may answer (the way multi-database "pinning" routers carry request state).
_request_positions: ContextVar[Positions | None] = ContextVar("request_positions", default=None)


class InvalidToken(ValueError):
    pass


def lsn_to_int(lsn: str) -> int:
    """'16/B374D848' -> 0x16B374D848, the order PostgreSQL compares them in."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def encode_token(positions: Positions) -> str:
    items = [f"{shard}-{lsn:x}" for shard, lsn in sorted(positions.items())]
    items.append(f"v{slot_map.current().version}")
    return _SIGNER.sign(".".join(items))


def decode_token(token: str | None) -> Positions:
    """The positions in a token; no token means no constraint. Raises InvalidToken, also for
    a shard this deployment does not have (its position could never be honoured, and
    merging it would make every later token carry it)."""
    if not token:
        return {}
    try:
        payload = _SIGNER.unsign(token)
        positions: Positions = {}
        map_version = 0
        for item in filter(None, payload.split(".")):
            if item.startswith("v"):
                map_version = int(item[1:])
                continue
            shard, lsn = item.split("-")
            positions[int(shard)] = int(lsn, 16)
    except (signing.BadSignature, ValueError) as exc:
        raise InvalidToken("invalid consistency token") from exc
    unknown = sorted(shard for shard in positions if not 0 <= shard < settings.SHARDING_COUNT)
    if unknown:
        raise InvalidToken(f"consistency token names shards that do not exist: {unknown}")
    slot_map.at_least(map_version)
    return positions


def merge(first: Positions, second: Positions) -> Positions:
    merged = dict(first)
    for shard, lsn in second.items():
        merged[shard] = max(lsn, merged.get(shard, 0))
    return merged


def request_positions() -> Positions:
    """The positions of the current request's token ({} outside a request)."""
    return _request_positions.get() or {}


@contextmanager
def positions_of_request(positions: Positions) -> Iterator[None]:
    reset = _request_positions.set(positions)
    try:
        yield
    finally:
        _request_positions.reset(reset)


def required_position(shard_id: int) -> int | None:
    """The WAL position a replica of `shard_id` must have replayed to serve this request:
    the request's token's, or the slot map's for a shard that took slots in a move
    (a replica may not yet hold the rows its primary received), whichever is later."""
    token = request_positions().get(shard_id)
    floor = slot_map.current().positions.get(shard_id)
    if floor is None:
        return token
    return floor if token is None else max(token, floor)

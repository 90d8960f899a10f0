"""Which slots move where to go from the map in force to `slot_map(N)`, and how much data
that is."""

from dataclasses import dataclass, field

from shards import routing
from shards.slot_map import Owners

# Rows per second a move copies, measured on the local cluster (docs/DATABASE_SCALING.md):
# the base of the plan's time estimate, with the fixed waits of a move added.
COPY_ROWS_PER_SECOND = 60_000


@dataclass
class Move:
    source: int
    target: int
    slots: list[int]
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows in the moving slots
    bytes: int = 0

    @property
    def name(self) -> str:
        return f"{self.source}_{self.target}"

    def as_json(self) -> dict:
        return {"source": self.source, "target": self.target, "slots": self.slots,
                "rows": self.rows, "bytes": self.bytes}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> "Move":
        return cls(data["source"], data["target"], data["slots"], data.get("rows", {}),
                   data.get("bytes", 0))  # fmt: skip


def target_owners(shard_count: int) -> tuple[int, ...]:
    return routing.slot_map(shard_count)


def moves_between(current: Owners, owners: tuple[int, ...]) -> list[Move]:
    """One move per (source, target) pair of shards, with the slots it carries."""
    pairs: dict[tuple[int, int], list[int]] = {}
    for slot, (old, new) in enumerate(zip(current.owners, owners, strict=True)):
        if old != new:
            pairs.setdefault((old, new), []).append(slot)
    return [Move(source, target, slots) for (source, target), slots in sorted(pairs.items())]


def incoming(moves: list[Move]) -> dict[int, list[int]]:
    """Target shard -> the slots it receives."""
    out: dict[int, list[int]] = {}
    for move in moves:
        out.setdefault(move.target, []).extend(move.slots)
    return {shard: sorted(slots) for shard, slots in out.items()}


def outgoing(moves: list[Move]) -> dict[int, list[int]]:
    """Source shard -> the slots it gives away."""
    out: dict[int, list[int]] = {}
    for move in moves:
        out.setdefault(move.source, []).extend(move.slots)
    return {shard: sorted(slots) for shard, slots in out.items()}


def estimate_seconds(moves: list[Move], fixed_waits: float) -> float:
    rows = sum(sum(move.rows.values()) for move in moves)
    return rows / COPY_ROWS_PER_SECOND + fixed_waits

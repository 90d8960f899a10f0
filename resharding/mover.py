"""Move slots between shards while the API serves: the phases of `manage.py reshard`.

    prepare  marker, fence and bookkeeping objects on the shards; the map announces the
             incoming slots as foreign on their targets (lists there skip the copies);
             a publication per (source, target) pair limited to its slots, a subscription
             on the target
    copy     PostgreSQL copies the rows, then streams every change; wait until each target
             has applied everything its sources committed (a marker row comes through)
    cutover  fence the moving slots on the sources (writes wait), wait for the markers,
             verify every slot (count and checksum on both sides), switch the map version:
             the waiting writes go to the new owners; move the user counts
    cleanup  once every worker runs the new map: drop subscriptions and publications,
             delete the copies left on the sources in batches, drop the fences, and write
             a map version with nothing foreign left
    done

Each phase can run again from its start: the job's phase is in the control database, every
step checks what exists, and the switch is recognised by the map itself. `abort` undoes a
move that has not switched. One move at a time.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import transaction

from resharding import fence, replication, rows, verify
from resharding.models import ReshardJob
from resharding.plan import Move, incoming, outgoing, target_owners
from resharding.primaries import connect, retrying
from resharding.progress import Reporter, Timer
from resharding.tables import MovedTable, moved_tables
from shards import slot_map
from shards.models import SlotMap

MARKER_TIMEOUT = 30.0  # seconds a target may take to apply what its source committed
POLL = 0.05


class MoveFailed(Exception):
    pass


def pause_for(phase: str) -> float:
    """Seconds RESHARD_PAUSE asks to wait on entering `phase` (drills and tests)."""
    name, _, seconds = settings.RESHARD_PAUSE.partition("=")
    return float(seconds) if name == phase and seconds else 0.0


def latest_map() -> SlotMap:
    return SlotMap.objects.order_by("-version").first()


def write_map(version_seen: int, owners, foreign: dict, positions: dict) -> int:
    """Write the next map version, if nobody else wrote one since `version_seen`."""
    with transaction.atomic():
        latest = SlotMap.objects.select_for_update().order_by("-version").first()
        if latest.version != version_seen:
            raise MoveFailed(f"the slot map changed under the move (v{latest.version})")
        SlotMap.objects.create(
            version=version_seen + 1,
            owners=list(owners),
            foreign={str(k): sorted(v) for k, v in foreign.items() if v},
            positions={str(k): v for k, v in positions.items()},
        )
    return version_seen + 1


def start(target_count: int, moves: list[Move], from_version: int) -> ReshardJob:
    """A new job for `moves` (measured), planned on map version `from_version`."""
    if slot_map.load().version != from_version:
        raise MoveFailed("the slot map changed since the plan: plan again")
    return ReshardJob.objects.create(
        target_count=target_count,
        from_version=from_version,
        phase="prepare",
        moves=[move.as_json() for move in moves],
    )


class Reshard:
    def __init__(self, job: ReshardJob, write: Callable[[str], None]) -> None:
        self.job = job
        self.moves = [Move.from_json(m) for m in job.moves]
        self.tables: list[MovedTable] = moved_tables()
        self.report = Reporter(write, f"reshard #{job.pk} to {job.target_count}:")
        self.conns: dict[int, psycopg.Connection] = {}

    # ---- plumbing ---------------------------------------------------------------------

    @contextmanager
    def connected(self) -> Iterator["Reshard"]:
        shards = {m.source for m in self.moves} | {m.target for m in self.moves}
        with ExitStack() as stack:
            for shard in sorted(shards):
                self.conns[shard] = stack.enter_context(connect(shard))
            try:
                yield self
            finally:
                self.conns.clear()

    def name(self, move: Move) -> str:
        return f"reshard_{self.job.pk}_{move.source}_{move.target}"

    @property
    def sources(self) -> list[int]:
        return sorted({m.source for m in self.moves})

    @property
    def targets(self) -> list[int]:
        return sorted({m.target for m in self.moves})

    def _names_to(self, target: int) -> list[str]:
        return [self.name(m) for m in self.moves if m.target == target]

    def _pause(self, phase: str) -> None:
        seconds = pause_for(phase)
        if seconds:
            self.report.line(f"{phase}: pausing {seconds:g} s (RESHARD_PAUSE)")
            time.sleep(seconds)

    def switched(self) -> bool:
        return tuple(latest_map().owners) == target_owners(self.job.target_count)

    # ---- the phases -------------------------------------------------------------------

    def run(self) -> None:
        steps: dict[str, Callable[[], None]] = {
            "prepare": self.prepare,
            "copy": self.copy,
            "cutover": self.cutover,
            "cleanup": self.cleanup,
        }
        with self.connected():
            while self.job.active:
                steps[self.job.phase]()

    def prepare(self) -> None:
        timer = Timer()
        for conn in self.conns.values():
            replication.prepare_shard(conn)
            fence.prepare(conn)
            rows.prepare(conn)
        # Copies left on a target by an aborted attempt are not its rows: start clean (but
        # never under a subscription of this move, which may already be copying).
        for target, slots in incoming(self.moves).items():
            if not replication.subscribed(self.conns[target], self._names_to(target)):
                for table in self.tables:
                    retrying(rows.delete_slots, self.conns[target], table, slots)
        latest = latest_map()
        foreign = {int(k): set(v) for k, v in latest.foreign.items()}
        wanted = {target: set(slots) for target, slots in incoming(self.moves).items()}
        if foreign != wanted:
            write_map(latest.version, latest.owners, wanted, latest.positions)
            # Every worker must skip the copies in its lists before the first one arrives.
            time.sleep(settings.SLOT_MAP_REFRESH + 0.5)
        for move in self.moves:
            retrying(replication.publish, self.conns[move.source], self.name(move), self.tables,
                     move.slots)  # fmt: skip
        for move in self.moves:
            replication.subscribe(self.conns[move.target], self.name(move), move.source)
        self.report.line(
            f"prepare: {len(self.moves)} publications and subscriptions in {timer.seconds:.1f} s"
        )
        self.job.enter("copy")
        self._pause("copy")

    def copy(self) -> None:
        timer = Timer()
        total = sum(sum(m.rows.values()) for m in self.moves)
        with self.report.bar(total, "rows", "copy") as bar:
            while True:
                states: dict[str, str] = {}
                copying = 0
                for target in self.targets:
                    conn = self.conns[target]
                    states.update(replication.sync_states(conn, self._names_to(target)))
                    copying += replication.rows_being_copied(conn)
                ready = [name for name, state in states.items() if state == "r"]
                expected = len(self.moves) * (len(self.tables) + 1)  # + the marker table
                done = sum(
                    m.rows.get(t.name, 0)
                    for m in self.moves
                    for t in self.tables
                    if f"{self.name(m)}/{t.name}" in ready
                )
                bar.n = min(total, done + copying)
                bar.refresh()
                if len(ready) == expected:
                    break
                time.sleep(0.2)
        copied = timer.seconds
        self.report.line(
            f"copy: {total:,} rows in {copied:.1f} s ({total / max(copied, 0.001):,.0f} rows/s)"
        )
        caught_up = self.wait_for_markers("catchup", show_lag=True)
        self.report.line(f"catch-up: targets applied all changes in {caught_up:.2f} s")
        self.job.enter("cutover")

    def wait_for_markers(self, label: str, show_lag: bool = False) -> float:
        """Put a marker on every source and wait until each of its targets applied it."""
        timer = Timer()
        marker = f"{self.name(self.moves[0])}_{label}_{time.time_ns()}"
        for source in self.sources:
            replication.put_marker(self.conns[source], f"{marker}_{source}")
        pending = {(m.source, m.target) for m in self.moves}
        lag_total = 0
        if show_lag:
            lag_total = sum(
                replication.lag_bytes(self.conns[m.source], [self.name(m)]) for m in self.moves
            )
        with self.report.bar(lag_total, "B", "catch-up") as bar:
            while pending:
                for source, target in sorted(pending):
                    if replication.has_marker(self.conns[target], f"{marker}_{source}"):
                        pending.discard((source, target))
                if not pending:
                    break
                if timer.seconds > MARKER_TIMEOUT:
                    raise MoveFailed(f"targets did not catch up within {MARKER_TIMEOUT:g} s")
                if show_lag:
                    lag = sum(
                        replication.lag_bytes(self.conns[m.source], [self.name(m)])
                        for m in self.moves
                    )
                    bar.n = max(0, lag_total - lag)
                    bar.refresh()
                time.sleep(POLL)
        return timer.seconds

    def cutover(self) -> None:
        if self.switched():
            self.after_switch()
            return
        lease = settings.RESHARD_FENCE_LEASE
        timer = Timer()
        for source, slots in outgoing(self.moves).items():
            retrying(fence.raise_fence, self.conns[source], self.tables, slots, lease)
        self.report.line(f"cutover: writes to {sum(len(m.slots) for m in self.moves)} slots"
                         f" fenced in {timer.seconds:.3f} s")  # fmt: skip
        self._pause("cutover")
        try:
            self.wait_for_markers("cutover")
            self.verify()
            positions = {t: replication.position(self.conns[t]) for t in self.targets}
            for source, slots in outgoing(self.moves).items():
                if not fence.renew(self.conns[source], slots, lease):
                    raise MoveFailed(f"the fence on shard {source} lapsed before the switch")
            latest = latest_map()
            if latest.version < self.job.from_version + 1:
                raise MoveFailed("the slot map lost the move's announcement")
            foreign = {source: set(slots) for source, slots in outgoing(self.moves).items()}
            version = write_map(
                latest.version, target_owners(self.job.target_count), foreign, positions
            )
        except Exception:
            # Not switched: the sources take writes again; running --yes retries the cutover.
            for source, slots in outgoing(self.moves).items():
                retrying(fence.lift, self.conns[source], self.tables, slots)
            raise
        self.job.switched_version = version
        self.job.write_pause = timer.seconds
        self.job.save(update_fields=["switched_version", "write_pause", "updated_at"])
        self.report.line(f"cutover: map v{version} in force; writes paused {timer.seconds:.3f} s")
        self.after_switch()

    def verify(self) -> None:
        """Every moving slot equal on both sides: one scan per shard and table, all at once
        on connections of their own, since the writes to the moving slots wait meanwhile."""
        timer = Timer()
        slots_of = {**outgoing(self.moves), **incoming(self.moves)}
        scans = [(shard, table) for shard in slots_of for table in self.tables]

        def summarise(scan: tuple[int, MovedTable]) -> verify.Summary:
            shard, table = scan
            with connect(shard) as conn:
                return verify.summarise(conn, table, slots_of[shard])

        with ThreadPoolExecutor(max_workers=len(scans)) as pool:
            results = pool.map(summarise, scans)
            summaries = {(s, t.name): r for (s, t), r in zip(scans, results, strict=True)}
        for move in self.moves:
            for table in self.tables:
                source = _only(summaries[move.source, table.name], move.slots)
                target = _only(summaries[move.target, table.name], move.slots)
                differ = verify.differences(source, target)
                if differ:
                    raise MoveFailed(
                        f"{table.name}: slots {differ[:10]} differ between shard"
                        f" {move.source} and shard {move.target}"
                    )
                move.rows[table.name] = sum(count for count, _ in target.values())
        self.job.moves = [move.as_json() for move in self.moves]
        self.job.save(update_fields=["moves", "updated_at"])
        moved = sum(sum(m.rows.values()) for m in self.moves)
        self.report.line(f"verify: {moved:,} rows equal on both sides in {timer.seconds:.3f} s")

    def after_switch(self) -> None:
        """The new owners serve the slots: keep stale workers off the sources for good and
        move the user counts, each exactly once."""
        for source, slots in outgoing(self.moves).items():
            fence.make_permanent(self.conns[source], slots)
        for move in self.moves:
            users = move.rows.get("users", 0)
            rows.adjust_user_count(self.conns[move.target], self.job.pk, f"in {move.name}", users)
            rows.adjust_user_count(self.conns[move.source], self.job.pk, f"out {move.name}", -users)
        self.job.enter("cleanup")

    def cleanup(self) -> None:
        timer = Timer()
        switched = self.switched_map()
        # Requests routed by the old map (at most SLOT_MAP_REFRESH old) end within DB_TIMEOUT.
        settle = settings.SLOT_MAP_REFRESH * 2 + settings.DB_TIMEOUT
        age = time.time() - switched.created_at.timestamp()
        if age < settle:
            time.sleep(settle - age)
        self.drop_replication()
        deleted = 0
        with self.report.bar(
            sum(sum(m.rows.values()) for m in self.moves), "rows", "cleanup"
        ) as bar:
            for source, slots in outgoing(self.moves).items():
                for table in self.tables:
                    deleted += retrying(rows.delete_slots, self.conns[source], table, slots)
                    bar.n = deleted
                    bar.refresh()
        for source, slots in outgoing(self.moves).items():
            retrying(fence.lift, self.conns[source], self.tables, slots)
        self.clear_markers()
        latest = latest_map()
        if latest.foreign or latest.positions:
            write_map(latest.version, latest.owners, {}, {})
        self.report.line(f"cleanup: {deleted:,} copies deleted from the sources in"
                         f" {timer.seconds:.1f} s")  # fmt: skip
        self.job.enter("done")

    def switched_map(self) -> SlotMap:
        """The map version that gave the slots to their new owners."""
        if self.job.switched_version is not None:
            return SlotMap.objects.get(version=self.job.switched_version)
        owners = list(target_owners(self.job.target_count))
        versions = SlotMap.objects.filter(version__gt=self.job.from_version).order_by("version")
        return next(m for m in versions if m.owners == owners)

    def drop_replication(self) -> None:
        for move in self.moves:
            replication.unsubscribe(self.conns[move.target], self.name(move))
        for source in self.sources:
            names = [self.name(m) for m in self.moves if m.source == source]
            for i, name in enumerate(names):
                last = i == len(names) - 1
                retrying(replication.unpublish, self.conns[source], name, self.tables, not last)

    def clear_markers(self) -> None:
        for conn in self.conns.values():
            replication.clear_markers(conn, f"reshard_{self.job.pk}_")

    # ---- undo -------------------------------------------------------------------------

    def abort(self) -> None:
        """Undo a move that has not switched: the old layout stays, as if it never ran."""
        with self.connected():
            if self.switched():
                before = len(set(SlotMap.objects.get(version=self.job.from_version).owners))
                raise MoveFailed(
                    "the move has switched: finish it with --yes, then move back with"
                    f" --to {before}"
                )
            for source, slots in outgoing(self.moves).items():
                fence.prepare(self.conns[source])
                retrying(fence.lift, self.conns[source], self.tables, slots)
            self.drop_replication()
            for target, slots in incoming(self.moves).items():
                for table in self.tables:
                    retrying(rows.delete_slots, self.conns[target], table, slots)
            self.clear_markers()
            latest = latest_map()
            if latest.foreign or latest.positions:
                write_map(latest.version, latest.owners, {}, {})
            self.job.enter("aborted")
            self.report.line("aborted: the old layout is intact")


def _only(summary: verify.Summary, slots: list[int]) -> verify.Summary:
    return {slot: summary[slot] for slot in slots if slot in summary}


def measure(moves: list[Move], tables: list[MovedTable]) -> None:
    """Fill in each move's rows and bytes, counted on its source now."""
    with ExitStack() as stack:
        conns: dict[int, Any] = {}
        for move in moves:
            if move.source not in conns:
                conns[move.source] = stack.enter_context(connect(move.source))
            conn = conns[move.source]
            move.bytes = 0
            for table in tables:
                count = rows.count_rows(conn, table, move.slots)
                size, total = rows.table_bytes(conn, table)
                move.rows[table.name] = count
                move.bytes += size * count // max(total, 1)

"""`manage.py reshard --to N`: move slots online so that N shards own them (slot_map(N)).

    --plan    print the slots that move, from which shard to which, rows and bytes per move
              and an estimate of the time; change nothing
    --yes     move (or continue the move in progress) and exit 0 once it is complete and
              verified
    --status  the state and progress of the latest move
    --abort   undo the move in progress if it has not switched yet

See resharding/mover.py for the phases and docs/DATABASE_SCALING.md for the guarantees."""

import sys

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from resharding import replication
from resharding.identity import SETTING
from resharding.models import ReshardJob
from resharding.mover import MoveFailed, Reshard, measure, start
from resharding.plan import (
    Move,
    estimate_seconds,
    moves_between,
    target_owners,
)
from resharding.primaries import connect
from resharding.tables import NotMovable, moved_tables
from shards import slot_map

# The waits of a move besides copying: the map announcement, the catch-up markers and the
# settling time before cleanup (seconds, at the default settings).
FIXED_WAITS = 6.0


class Command(BaseCommand):
    help = "Move slots between shards online so that N shards own them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", type=int, dest="count", help="Shards that own slots after.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--plan", action="store_true", help="Print the plan; change nothing.")
        action.add_argument("--yes", action="store_true", help="Move (or continue the move).")
        action.add_argument("--status", action="store_true", help="State of the latest move.")
        action.add_argument("--abort", action="store_true", help="Undo a move not yet switched.")

    def handle(self, *args, count: int | None, plan: bool, yes: bool, status: bool,
               abort: bool, **options) -> None:  # fmt: skip
        try:
            if status:
                return self.status()
            if abort:
                return self.abort()
            if count is None:
                raise CommandError("say how many shards: --to N")
            self.move(count, run=yes)
        except (MoveFailed, NotMovable, psycopg.Error) as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            job = ReshardJob.latest()
            phase = job.phase if job else "?"
            self.stderr.write(
                f"interrupted in phase {phase}: run --yes again to continue, or --abort"
            )
            sys.exit(130)

    # ---- --to N [--plan | --yes] ------------------------------------------------------

    def move(self, count: int, run: bool) -> None:
        if not 1 <= count <= settings.SHARDING_COUNT:
            raise CommandError(
                f"--to {count}: {settings.SHARDING_COUNT} shards are configured. Add shard"
                f" hosts first: SHARDING_COUNT={count} make up, SHARDING_COUNT={count}"
                f" .venv/bin/python manage.py migrate_shards, SHARDING_COUNT={count} make restart"
            )
        job = ReshardJob.latest()
        if job is not None and job.active:
            if job.target_count != count:
                raise CommandError(
                    f"a move to {job.target_count} shards is in phase {job.phase}: finish it"
                    f" with --to {job.target_count} --yes, or undo it with --abort"
                )
            self.print_plan([Move.from_json(m) for m in job.moves], f"continuing move #{job.pk}")
            if run:
                self.run(job)
            return
        current = slot_map.load()
        if current.foreign:
            raise CommandError(
                f"slot map v{current.version} still names foreign slots: an earlier move did"
                " not finish its cleanup"
            )
        moves = moves_between(current, target_owners(count))
        if not moves:
            self.stdout.write(f"slot map v{current.version} is slot_map({count}): nothing to move")
            return
        self.check_shards(moves)
        measure(moves, moved_tables())
        self.print_plan(moves, f"slot map v{current.version} -> slot_map({count})")
        if not run:
            self.stdout.write("nothing changed: add --yes to move")
            return
        job = start(count, moves, current.version)
        self.run(job)

    def run(self, job: ReshardJob) -> None:
        mover = Reshard(job, self.stdout.write)
        mover.run()
        job.refresh_from_db()
        self.stdout.write(
            f"done: slot map v{slot_map.load().version} is slot_map({job.target_count}),"
            f" verified; writes paused {job.write_pause or 0:.3f} s"
        )

    def check_shards(self, moves: list[Move]) -> None:
        """Every shard of the move answers, replicates logically and has the slot column."""
        for shard in sorted({m.source for m in moves} | {m.target for m in moves}):
            try:
                with connect(shard) as conn:
                    level = conn.execute("SHOW wal_level").fetchone()[0]
                    migrated = conn.execute("SELECT to_regproc('key_slot') IS NOT NULL").fetchone()
                    said = conn.execute("SELECT current_setting(%s, true)", [SETTING]).fetchone()
            except psycopg.OperationalError as exc:
                raise CommandError(f"shard {shard}'s primary does not answer: {exc}") from exc
            if said[0] and int(said[0]) != shard:
                raise CommandError(
                    f"shard {shard}'s primary URL leads to the database of shard {said[0]}"
                )
            if level != "logical":
                raise CommandError(
                    f"shard {shard}: wal_level is {level}, a move needs logical (make up sets it)"
                )
            if not migrated[0]:
                raise CommandError(
                    f"shard {shard} has no slot columns: .venv/bin/python manage.py migrate_shards"
                )

    def print_plan(self, moves: list[Move], title: str) -> None:
        self.stdout.write(title)
        for move in moves:
            counts = ", ".join(f"{rows:,} {table}" for table, rows in sorted(move.rows.items()))
            self.stdout.write(
                f"  shard {move.source} -> shard {move.target}: {len(move.slots)} slots"
                f" ({counts or 'not measured'}), {move.bytes / 1e6:.1f} MB"
            )
        slots = sum(len(m.slots) for m in moves)
        rows = sum(sum(m.rows.values()) for m in moves)
        seconds = estimate_seconds(moves, FIXED_WAITS)
        self.stdout.write(
            f"  in all: {slots} slots, {rows:,} rows; about {seconds:.0f} s. Writes to the"
            " moving slots wait while the switch verifies them (docs/DATABASE_SCALING.md)"
        )

    # ---- --status / --abort -------------------------------------------------------------

    def status(self) -> None:
        current = slot_map.load()
        shards = sorted(current.shards())
        self.stdout.write(f"slot map v{current.version}: shards {shards} own slots")
        job = ReshardJob.latest()
        if job is None:
            self.stdout.write("no move has run")
            return
        moves = [Move.from_json(m) for m in job.moves]
        self.stdout.write(f"move #{job.pk} to {job.target_count} shards: phase {job.phase}")
        self.stdout.write(f"  started {job.created_at:%Y-%m-%d %H:%M:%S}Z,"
                          f" last step {job.updated_at:%Y-%m-%d %H:%M:%S}Z")  # fmt: skip
        if job.write_pause is not None:
            self.stdout.write(f"  writes paused {job.write_pause:.3f} s at the switch")
        if job.phase in ("copy", "cutover"):
            for move in moves:
                name = f"reshard_{job.pk}_{move.source}_{move.target}"
                with connect(move.target) as target, connect(move.source) as source:
                    states = replication.sync_states(target, [name])
                    lag = replication.lag_bytes(source, [name])
                ready = sum(state == "r" for state in states.values())
                self.stdout.write(
                    f"  shard {move.source} -> shard {move.target}: {ready}/{len(states)}"
                    f" tables copied, {lag:,} bytes of WAL behind"
                )

    def abort(self) -> None:
        job = ReshardJob.latest()
        if job is None or not job.active:
            self.stdout.write("no move in progress: nothing to abort")
            return
        Reshard(job, self.stdout.write).abort()

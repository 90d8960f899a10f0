"""Bulk-load realistic users into every shard: `manage.py seed_users --count N`.

Each user row goes to the shard its id hashes to and its email's lookup row to the shard
the email hashes to, so seeded users behave exactly like users created through
the API: a duplicate email gets 409 and `?email=` finds them. Emails are unique
(`<prefix>-<id hex>@example.com`) and `created_at` is spread over the last `--days` days, so
lists and cursors walk realistic data.

Rows are sent with COPY (text format), one thread and one connection per shard, so every
shard loads in parallel while the main thread generates the next batch. Each batch is one
transaction on each shard, which is what lets COPY go through PgBouncer in transaction
mode. The statement triggers on `users` keep `user_counts` exact (one update per COPY).
Afterwards every shard is vacuumed and analysed, and the command waits until each replica
has replayed everything its primary wrote, so reads that follow see the whole load.
"""

import os
import queue
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from messenger.commands import error_line
from shards import slot_map
from shards.health import conninfo
from shards.routing import slot_for_key
from shards.topology import Shard, all_shards
from users.models import EmailLookup

# Sample names: realistic enough for list pages; uniqueness comes from the email.
_FIRST = (
    "Ada Alan Alice Amara Ana Bea Ben Chen Chloe Dan Dara Eli Emma Eva Farid Grace Hana Ian"
    " Ines Ivan Jack Jana Ji-woo Kai Kenji Lara Leo Lina Luca Maya Mia Nia Noah Omar Priya"
    " Quinn Rafael Rosa Sam Sara Tariq Tom Uma Vera Wei Yara Yusuf Zoe"
)
_LAST = (
    "Abebe Alvarez Baker Costa Dubois Evans Fischer Garcia Haddad Hughes Ivanova Jensen Kim"
    " Kowalski Lee Lopez Martin Meyer Nakamura Nguyen Novak Okafor Park Patel Rossi Santos"
    " Schmidt Silva Smith Tanaka Taylor Walker Wang Weber Yilmaz Zhang"
)
FIRST_NAMES = tuple(_FIRST.split())
LAST_NAMES = tuple(_LAST.split())

USERS_COPY = "COPY users (id, name, email, created_at, updated_at) FROM STDIN"
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,40}$")


@dataclass
class Batch:
    """Tab-separated COPY text for one shard: its users and the lookup rows it holds."""

    users: list[str]
    lookups: list[str]


def _lookup_columns() -> list[str]:
    """The lookup table's columns as the model declares them."""
    return [field.column for field in EmailLookup._meta.concrete_fields if not field.generated]


def lookup_copy_sql() -> str:
    return f"COPY email_lookup ({', '.join(_lookup_columns())}) FROM STDIN"


def _lookup_template() -> str:
    values = {"email": "{email}", "user_id": "{user_id}", "claimed_at": "{at}"}
    return "\t".join(values[column] for column in _lookup_columns()) + "\n"


def generate_batch(
    count: int,
    owners: tuple[int, ...],
    shard_count: int,
    prefix: str,
    start: datetime,
    span_us: int,
) -> list[Batch]:
    """`count` new users split by shard: users by id, lookup rows by email, each to its
    slot's owner in `owners` (the slot map in force)."""
    batches = [Batch([], []) for _ in range(shard_count)]
    raw = os.urandom(16 * count)
    rand = random.random
    now_text = datetime.now(UTC).isoformat()
    lookup_row = _lookup_template().format
    for i in range(count):
        user_id = str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4))
        email = f"{prefix}-{user_id.replace('-', '')}@example.com"
        created = (start + timedelta(microseconds=int(rand() * span_us))).isoformat()
        name = f"{random.choice(FIRST_NAMES)} {random.choice(LAST_NAMES)}"
        # The routing keys are the canonical id and the lower-cased email (both already so).
        batches[owners[slot_for_key(user_id)]].users.append(
            f"{user_id}\t{name}\t{email}\t{created}\t{created}\n"
        )
        batches[owners[slot_for_key(email)]].lookups.append(
            lookup_row(email=email, user_id=user_id, at=now_text)
        )
    return batches


class ShardLoader(threading.Thread):
    """Loads the batches queued for one shard on its own connection to the primary."""

    def __init__(self, shard: Shard, progress: "Progress") -> None:
        super().__init__(name=f"seed-{shard.name}", daemon=True)
        self.shard = shard
        self.progress = progress
        # Two batches in flight per shard: generation overlaps loading, memory stays bounded.
        self.batches: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.lookup_sql = lookup_copy_sql()

    def run(self) -> None:
        try:
            params = {**conninfo(self.shard.primary_alias)}
            params["connect_timeout"] = settings.DB_CONNECT_TIMEOUT
            with psycopg.connect(**params) as conn:
                while (batch := self.batches.get()) is not None:
                    with conn.cursor() as cursor:
                        if batch.users:
                            with cursor.copy(USERS_COPY) as copy:
                                copy.write("".join(batch.users))
                        if batch.lookups:
                            with cursor.copy(self.lookup_sql) as copy:
                                copy.write("".join(batch.lookups))
                    conn.commit()
                    self.progress.add(len(batch.users))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            # Keep draining so the producer never blocks on a dead loader.
            while self.batches.get() is not None:
                pass


class Progress:
    """Committed users, with rate and ETA: a tqdm bar on a terminal (the style of
    `manage.py reshard`), a plain line every `every` seconds otherwise, which is what a log
    keeps."""

    def __init__(
        self, total: int, write: Callable[[str], None], enabled: bool, every: float
    ) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._write = write
        self._every = every
        self._lock = threading.Lock()
        self._last_line = self.started
        tty = sys.stderr.isatty()
        self._plain = enabled and not tty
        self._bar = tqdm(
            total=total, unit=" users", unit_scale=True, desc="seeding", file=sys.stderr,
            disable=not (enabled and tty), mininterval=0.5, smoothing=0.1,
        )  # fmt: skip

    def add(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            self._bar.update(rows)
            now = time.monotonic()
            if self._plain and now - self._last_line >= self._every:
                self._last_line = now
                self._write(self.line())

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        rate = self.rate()
        eta = tqdm.format_interval((self.total - self.done) / rate) if rate else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"seeding: {self.done:,} of {self.total:,} users ({pct:.1f}%), "
            f"{rate:,.0f} users per second, ETA {eta}"
        )

    def close(self) -> None:
        self._bar.close()


def _autocommit(alias: str) -> psycopg.Connection:
    params = {**conninfo(alias), "autocommit": True}
    params["connect_timeout"] = settings.DB_CONNECT_TIMEOUT
    return psycopg.connect(**params)


def vacuum_analyze(shards: list[Shard]) -> None:
    """Fresh statistics for the planner; setting hint bits and the visibility map now
    spares the first readers after a big load from doing it."""
    for shard in shards:
        with _autocommit(shard.primary_alias) as conn:
            conn.execute("VACUUM (ANALYZE) users, email_lookup, user_counts")


def wait_for_replicas(shards: list[Shard], timeout: float) -> float:
    """Block until every replica has replayed its primary's current WAL position.
    Returns the seconds waited; raises CommandError after `timeout`."""
    started = time.monotonic()
    for shard in shards:
        with _autocommit(shard.primary_alias) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with _autocommit(shard.replica_alias) as replica:
            while not replica.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
            ).fetchone()[0]:
                if time.monotonic() - started > timeout:
                    raise CommandError(f"{shard.name} replica has not replayed {target}")
                time.sleep(0.05)
    return time.monotonic() - started


class Command(BaseCommand):
    help = "Bulk-load N users with COPY into every shard (and their email lookup rows)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="Users to add.")
        parser.add_argument("--batch", type=int, default=50_000, help="Users per transaction.")
        parser.add_argument("--prefix", default="seed", help="Email prefix: <prefix>-<hex>@...")
        parser.add_argument("--days", type=float, default=365.0, help="created_at spread.")
        parser.add_argument(
            "--replica-timeout", type=float, default=600.0, help="Seconds to wait for replicas."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress line.")
        parser.add_argument(
            "--progress-every",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="Without a terminal: a progress line (rate, ETA) this often.",
        )

    def handle(self, *args, **options) -> None:
        count, batch_size, prefix = options["count"], options["batch"], options["prefix"]
        if count < 0 or batch_size < 1:
            raise CommandError("--count must be >= 0 and --batch >= 1")
        if not PREFIX_RE.match(prefix):
            raise CommandError("--prefix: lower-case letters, digits, '.', '_' or '-'")
        shards = list(all_shards())
        # Read now, not the fallback a request would route by: rows seeded by a guessed map
        # would sit on shards that do not own them.
        owners = slot_map.load().owners
        progress = Progress(
            count,
            write=self.stderr.write,
            enabled=not options["no_progress"] and options["verbosity"] > 0,
            every=options["progress_every"],
        )
        loaders = [ShardLoader(shard, progress) for shard in shards]
        for loader in loaders:
            loader.start()
        span_us = int(options["days"] * 86_400 * 1_000_000)
        start = datetime.now(UTC) - timedelta(microseconds=span_us)
        try:
            remaining = count
            while remaining > 0 and not any(loader.error for loader in loaders):
                size = min(batch_size, remaining)
                batches = generate_batch(size, owners, len(shards), prefix, start, span_us)
                for loader, batch in zip(loaders, batches, strict=True):
                    loader.batches.put(batch)
                remaining -= size
        finally:
            for loader in loaders:
                loader.batches.put(None)
            for loader in loaders:
                loader.join()
            progress.close()
        errors = [f"{ld.shard.name}: {error_line(ld.error)}" for ld in loaders if ld.error]
        if errors:
            raise CommandError("seeding failed (committed batches stay): " + "; ".join(errors))
        elapsed = time.monotonic() - progress.started
        self.stdout.write(
            f"seeded {progress.done:,} users in {elapsed:.1f} s ({progress.rate():,.0f} users/s)"
        )
        vacuum_analyze(shards)
        waited = wait_for_replicas(shards, options["replica_timeout"])
        total = time.monotonic() - progress.started
        self.stdout.write(
            f"vacuumed and analysed every shard; replicas caught up {waited:.1f} s later"
            f" ({total:.1f} s in all)"
        )

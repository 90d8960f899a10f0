"""A cluster of its own for the online resharding test (tests/test_reshard.py): 5 shards
first, a sixth (shard 5) added later, each with its replica and PgBouncer, a control
database and an API server, on ports no other cluster uses. Built on tests/fault_cluster.py.

    cluster = ReshardCluster()            # SHARDING_COUNT=5
    cluster.clean(); cluster.up(); cluster.migrate_shards(); cluster.start_api()
    cluster.set_shards(6); cluster.up(); cluster.migrate_shards(); cluster.restart_api()
    cluster.manage("reshard", "--to", "6", "--yes")           # the command under test
    snap = cluster.snapshot()                                   # every row of every primary
    assert not check_layout(snap)                               # rows where the map says

Ports: primaries 27440+i, replicas 27450+i, PgBouncers 28430+i, control 27439, API 18097,
all shifted by FAULT_PORT_OFFSET; data under var/reshard-cluster; the API log in
var/reshard-api.log and every manage.py run's output under var/reshard-logs/.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from shards.routing import canonical_email, slot_for_key
from tests.fault_cluster import _OFFSET, ROOT, FaultCluster, stop_process_group

MAX_SHARDS = 6
ENV = {
    "SHARDING_COUNT": "5",
    "CLUSTER_DIR": str(ROOT / "var" / "reshard-cluster"),
    "PRIMARY_BASE_PORT": str(27440 + _OFFSET),
    "REPLICA_BASE_PORT": str(27450 + _OFFSET),
    "PGBOUNCER_BASE_PORT": str(28430 + _OFFSET),
    "CONTROL_DB_PORT": str(27439 + _OFFSET),
    "CLUSTER_DATABASES": "messenger",
}
API_PORT = 18097 + _OFFSET
LOG_DIR = ROOT / "var" / "reshard-logs"
# The physical replication slots of the replicas (database/cluster.py slot_name()).
PHYSICAL_SLOT = "shard_%_replica"


class ReshardCluster(FaultCluster):
    def __init__(self, shards: int = 5) -> None:
        super().__init__(
            env={**ENV, "SHARDING_COUNT": str(shards)},
            api_port=API_PORT,
            api_log="reshard-api.log",
        )
        self.runs = 0  # manage.py runs, numbering their log files

    # --- configuration --------------------------------------------------------------------
    def set_shards(self, shards: int) -> None:
        """Configure `shards` shards from now on (launcher, manage.py and the API)."""
        self.env["SHARDING_COUNT"] = str(shards)
        self.shards = shards
        self.settings = self.launcher.load_settings({**os.environ, **self.env})
        self.cluster = self.launcher.Cluster(self.settings, self.cluster.bins)

    def app_env(self, **extra: str) -> dict[str, str]:
        return super().app_env(
            PRIMARY_BASE_PORT=self.env["PRIMARY_BASE_PORT"],
            CONTROL_DB_PORT=self.env["CONTROL_DB_PORT"],
            SLOT_MAP_REFRESH="1",
            WEB_CONCURRENCY="2",
            **extra,
        )

    # --- processes ------------------------------------------------------------------------
    def clean(self) -> None:
        """Stop whatever an earlier run left and delete the cluster directory."""
        self._launcher_command("clean")

    def manage(
        self, *args: str, timeout: float = 180, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `manage.py *args` to its end; its output is also kept under var/reshard-logs/."""
        self.runs += 1
        log = LOG_DIR / f"{self.runs:02d}-{'_'.join(a.lstrip('-') for a in args)}.log"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=self.app_env(**extra_env),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
            err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr
            log.write_text(f"$ manage.py {' '.join(args)}\nTIMEOUT after {timeout}s\n"
                           f"--- stdout\n{out or ''}\n--- stderr\n{err or ''}\n")  # fmt: skip
            return subprocess.CompletedProcess(exc.cmd, -1, out or "", f"timeout\n{err or ''}")
        log.write_text(
            f"$ manage.py {' '.join(args)}\nexit {done.returncode} after "
            f"{time.monotonic() - started:.1f}s\n--- stdout\n{done.stdout}\n"
            f"--- stderr\n{done.stderr}\n"
        )
        return done

    def start_manage(self, *args: str, **extra_env: str) -> subprocess.Popen:
        """Start `manage.py *args` in its own process group (to be SIGKILLed mid-run); its
        output goes to a file under var/reshard-logs/ (`process.log_path`)."""
        self.runs += 1
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{self.runs:02d}-{'_'.join(a.lstrip('-') for a in args)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - the child keeps it
        log.write(f"$ manage.py {' '.join(args)} {extra_env}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.app_env(**extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process.log_path = log_path  # type: ignore[attr-defined]
        return process

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the command and anything it started (a crash, not a clean stop)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        with open(process.log_path, "a") as log:  # type: ignore[attr-defined]
            log.write("\n--- SIGKILLed by the test\n")

    def migrate_shards(self) -> None:
        done = self.manage("migrate_shards", "-v", "0", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def seed(self, count: int) -> None:
        done = self.manage("seed_users", "--count", str(count), "--no-progress", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def restart_api(self, **extra_env: str) -> None:
        if self.api is not None:
            stop_process_group(self.api)
            self.api = None
        self.start_api(**extra_env)

    # --- the control database -----------------------------------------------------------------
    def control(self) -> psycopg.Connection:
        port = int(self.env["CONTROL_DB_PORT"])
        return psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="control", autocommit=True
        )

    def current_map(self) -> tuple[int, tuple[int, ...]]:
        """(version, owners) of the slot map in force."""
        with self.control() as conn:
            version, owners = conn.execute(
                "SELECT version, owners FROM slot_map ORDER BY version DESC LIMIT 1"
            ).fetchone()
        return version, tuple(owners)

    def map_leftovers(self) -> list[str]:
        """What the map in force still says about a move: foreign slots (copies a shard
        holds without owning them) or replica positions; empty once a move is over."""
        with self.control() as conn:
            version, foreign, positions = conn.execute(
                'SELECT version, "foreign", positions FROM slot_map ORDER BY version DESC LIMIT 1'
            ).fetchone()
        out = []
        if foreign:
            out.append(f"map v{version} still names foreign slots on shards {sorted(foreign)}")
        if positions:
            out.append(f"map v{version} still names replica positions {positions}")
        return out

    def job_phase(self) -> str | None:
        """The phase of the latest reshard job, None if there is none (or no table yet)."""
        try:
            with self.control() as conn:
                row = conn.execute(
                    "SELECT phase FROM reshard_job ORDER BY id DESC LIMIT 1"
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None

    def wait_phase(self, phase: str, process: subprocess.Popen, timeout: float = 60) -> float:
        """Wait until the latest job is in `phase` (while `process` runs); seconds waited."""
        started = time.monotonic()
        while self.job_phase() != phase:
            if process.poll() is not None:
                raise AssertionError(
                    f"the command exited ({process.returncode}) before phase {phase!r} "
                    f"(last phase {self.job_phase()!r}); see {process.log_path}"  # type: ignore[attr-defined]
                )
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"phase {phase!r} not reached in {timeout}s (last {self.job_phase()!r})"
                )
            time.sleep(0.05)
        return time.monotonic() - started

    # --- logical replication leftovers ----------------------------------------------------------
    def replication_leftovers(self) -> list[str]:
        """Publications, logical replication slots and subscriptions on any primary."""
        found = []
        for shard in range(self.shards):
            with self.primary(shard) as conn:
                for (name,) in conn.execute("SELECT pubname FROM pg_publication"):
                    found.append(f"shard {shard}: publication {name}")
                for name, kind in conn.execute(
                    "SELECT slot_name, slot_type FROM pg_replication_slots "
                    "WHERE slot_name NOT LIKE %s OR slot_type <> 'physical'",
                    [PHYSICAL_SLOT],
                ):
                    found.append(f"shard {shard}: {kind} replication slot {name}")
                for (name,) in conn.execute("SELECT subname FROM pg_subscription"):
                    found.append(f"shard {shard}: subscription {name}")
        return found

    # --- every row ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        version, owners = self.current_map()
        snap = Snapshot(version, owners)
        for shard in range(self.shards):
            with self.primary(shard) as conn:
                snap.users[shard] = {
                    uid: (name, email)
                    for uid, name, email in conn.execute("SELECT id::text, name, email FROM users")
                }
                snap.claims[shard] = dict(
                    conn.execute("SELECT email, user_id::text FROM email_lookup").fetchall()
                )
                snap.counters[shard] = conn.execute(
                    "SELECT coalesce(sum(n), 0)::bigint FROM user_counts"
                ).fetchone()[0]
        return snap


@dataclass
class Snapshot:
    """Every users and email_lookup row of every primary, and the map in force."""

    version: int
    owners: tuple[int, ...]
    users: dict[int, dict[str, tuple[str, str]]] = field(default_factory=dict)  # id -> name, email
    claims: dict[int, dict[str, str]] = field(default_factory=dict)  # email -> user id
    counters: dict[int, int] = field(default_factory=dict)  # sum of user_counts per shard

    def owner_of_user(self, user_id: str) -> int:
        return self.owners[slot_for_key(user_id)]

    def owner_of_email(self, email: str) -> int:
        return self.owners[slot_for_key(canonical_email(email))]

    def user_shards(self) -> dict[str, list[int]]:
        where: dict[str, list[int]] = {}
        for shard, rows in self.users.items():
            for user_id in rows:
                where.setdefault(user_id, []).append(shard)
        return where

    def all_users(self) -> dict[str, tuple[str, str]]:
        return {uid: row for rows in self.users.values() for uid, row in rows.items()}

    def counts(self) -> dict[int, int]:
        return {shard: len(rows) for shard, rows in self.users.items()}


def check_layout(snap: Snapshot, limit: int = 10) -> list[str]:
    """Every way the rows differ from the map in force, one line each (at most `limit` of a
    kind, then a count): a user on no shard or several, a user or claim on a shard the map
    does not name (rows of moved slots left behind), a user whose email has no claim, or a
    claim elsewhere or pointing to another user, an email claimed on two shards, and a
    shard whose trigger-kept user counter differs from its rows."""
    problems: dict[str, list[str]] = {}

    def add(kind: str, text: str) -> None:
        problems.setdefault(kind, []).append(text)

    for user_id, shards in snap.user_shards().items():
        if len(shards) > 1:
            add("user on several shards", f"{user_id} on shards {shards}")
        owner = snap.owner_of_user(user_id)
        for shard in shards:
            if shard != owner:
                add("user row not where the map says", f"{user_id} on {shard}, map says {owner}")
    claim_shards: dict[str, list[int]] = {}
    for shard, claims in snap.claims.items():
        for email in claims:
            claim_shards.setdefault(email, []).append(shard)
            owner = snap.owner_of_email(email)
            if shard != owner:
                add("claim row not where the map says", f"{email} on {shard}, map says {owner}")
    for email, shards in claim_shards.items():
        if len(shards) > 1:
            add("email claimed on several shards", f"{email} on {shards}")
    for user_id, (_name, email) in snap.all_users().items():
        key = canonical_email(email)
        shards = claim_shards.get(key, [])
        if not shards:
            add("user without email claim", f"{user_id} {key}")
            continue
        owner = snap.owner_of_email(key)
        if owner not in shards:
            add("claim missing on its shard", f"{user_id} {key} on {shards}, map says {owner}")
        elif snap.claims[owner][key] != user_id:
            add("claim points elsewhere", f"{key} -> {snap.claims[owner][key]}, not {user_id}")
    for shard, rows in snap.users.items():
        if snap.counters.get(shard) != len(rows):
            add("user counter wrong", f"shard {shard}: user_counts {snap.counters.get(shard)}"
                f" but {len(rows)} rows")  # fmt: skip
    out = []
    for kind, lines in problems.items():
        out.append(f"{kind}: {len(lines)}, e.g. " + "; ".join(lines[:limit]))
    return out


def share(snap: Snapshot, shard: int) -> float:
    counts = snap.counts()
    total = sum(counts.values())
    return counts.get(shard, 0) / total if total else 0.0


def describe(snap: Snapshot) -> str:
    counts = snap.counts()
    claims = Counter({shard: len(rows) for shard, rows in snap.claims.items()})
    return (
        f"map v{snap.version}; users per shard {dict(sorted(counts.items()))}; "
        f"claims per shard {dict(sorted(claims.items()))}"
    )

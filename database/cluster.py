#!/usr/bin/env python3
"""Launcher of the local sharded PostgreSQL cluster (no Docker needed).

Shard i is a primary on PRIMARY_BASE_PORT+i, a streaming replica on REPLICA_BASE_PORT+i and a
PgBouncer (transaction pooling) on PGBOUNCER_BASE_PORT+i; a control database for Django's own
tables listens on CONTROL_DB_PORT. The API writes through the PgBouncer and reads the replica
on its own port, so the replica stays readable when the PgBouncer is gone. Everything (data,
rendered configs, logs, pid files) lives under CLUSTER_DIR. Standard library only: it runs
before any virtualenv exists.

    python3 database/cluster.py up|down|clean|ps|stats|logs [-f]|env
    python3 database/cluster.py shell [--shard N] [--replica] [--pgbouncer] [--control]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import os
import pwd
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent
SUPERUSER = "postgres"
MARKER = ".messenger-cluster"  # `clean` deletes only a directory that carries this marker
START_TIMEOUT = 60


class ClusterError(Exception):
    """A failure worth one clear line to the user."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    shards: int
    cluster_dir: Path
    primary_base_port: int
    replica_base_port: int
    pgbouncer_base_port: int
    control_port: int
    databases: tuple[str, ...]
    control_databases: tuple[str, ...]
    bindir_override: str | None


def _int_env(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ClusterError(f"{key}={raw!r} is not an integer") from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the cluster's settings from the environment (defaults match docker-compose.yml)."""
    env = dict(os.environ if env is None else env)
    cluster_dir = Path(env.get("CLUSTER_DIR") or "var/cluster")
    if not cluster_dir.is_absolute():
        cluster_dir = REPO_ROOT / cluster_dir
    settings = Settings(
        shards=_int_env(env, "SHARDING_COUNT", 5),
        cluster_dir=Path(os.path.abspath(cluster_dir)),
        primary_base_port=_int_env(env, "PRIMARY_BASE_PORT", 5440),
        replica_base_port=_int_env(env, "REPLICA_BASE_PORT", 5450),
        pgbouncer_base_port=_int_env(env, "PGBOUNCER_BASE_PORT", 6430),
        control_port=_int_env(env, "CONTROL_DB_PORT", 5439),
        databases=tuple((env.get("CLUSTER_DATABASES") or "messenger messenger_test").split()),
        control_databases=tuple((env.get("CONTROL_DATABASES") or "control").split()),
        bindir_override=env.get("PG_BINDIR") or None,
    )
    if settings.shards < 1:
        raise ClusterError("SHARDING_COUNT must be at least 1")
    if not settings.databases or not settings.control_databases:
        raise ClusterError("CLUSTER_DATABASES and CONTROL_DATABASES must name a database")
    return settings


@dataclass(frozen=True)
class Instance:
    """One process of the cluster; `name` is also its docker-compose service name."""

    role: str  # primary | replica | pgbouncer | control
    shard: int | None
    port: int
    name: str


def instances(s: Settings) -> list[Instance]:
    """Every process of the cluster, in display order."""
    out = [Instance("control", None, s.control_port, "control-db")]
    for i in range(s.shards):
        out += [
            Instance("primary", i, s.primary_base_port + i, f"shard-{i}"),
            Instance("replica", i, s.replica_base_port + i, f"shard-{i}-replica"),
            Instance("pgbouncer", i, s.pgbouncer_base_port + i, f"pgbouncer-{i}"),
        ]
    return out


def shard_instances(s: Settings, shard: int) -> tuple[Instance, Instance, Instance]:
    primary, replica, bouncer = (x for x in instances(s) if x.shard == shard)
    return primary, replica, bouncer


def slot_name(shard: int) -> str:
    return f"shard_{shard}_replica"


class Layout:
    """Where each file of the cluster lives under CLUSTER_DIR."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "log"
        self.run = root / "run"
        self.conf = root / "pgbouncer"

    def data_dir(self, inst: Instance) -> Path:
        return self.data / inst.name

    def log_file(self, inst: Instance) -> Path:
        return self.log / f"{inst.name}.log"

    def pid_file(self, inst: Instance) -> Path:
        return self.run / f"{inst.name}.pid"

    def ini_file(self, inst: Instance) -> Path:
        return self.conf / f"{inst.name}.ini"

    @property
    def userlist(self) -> Path:
        return self.conf / "userlist.txt"


# --------------------------------------------------------------------------- processes


def _is_root() -> bool:
    return os.geteuid() == 0


def _clean_env() -> dict[str, str]:
    # libpq reads PGHOST, PGOPTIONS, ...: a developer's shell must not redirect our commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k.startswith("PG_")}
    env["PGCONNECT_TIMEOUT"] = "5"
    return env


def _as_owner(cmd: Sequence[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: drop to `postgres` when we are root."""
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if _is_root() else list(cmd)


def run(
    cmd: Sequence[str],
    *,
    owner: bool = False,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, as the cluster's owner if `owner`; a failure becomes a ClusterError."""
    full = _as_owner(cmd) if owner else list(cmd)
    try:
        proc = subprocess.run(
            full,
            input=input,
            cwd=cwd,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"timed out after {timeout:.0f}s: {shlex.join(cmd)}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ClusterError(f"{shlex.join(cmd)} failed:\n  " + "\n  ".join(detail))
    return proc


def _proc_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not a server any more.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postgres_pid(data_dir: Path) -> int | None:
    """PID of the postmaster serving `data_dir`, or None (a stale postmaster.pid is ignored)."""
    pid = _read_pid(data_dir / "postmaster.pid")
    if pid is None or not _proc_alive(pid):
        return None
    # The postmaster chdirs into its data directory: a pid reused by another process does not.
    try:
        return pid if os.readlink(f"/proc/{pid}/cwd") == str(data_dir.resolve()) else None
    except PermissionError:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return pid if b"postgres" in cmdline else None
    except OSError:
        return None


def _processes_in(data_dir: Path) -> list[int]:
    """Live processes whose working directory is `data_dir` (a postmaster and its backends)."""
    target, found = str(data_dir.resolve()), []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.readlink(proc / "cwd") == target and _proc_alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def pgbouncer_pid(layout: Layout, inst: Instance) -> int | None:
    pid = _read_pid(layout.pid_file(inst))
    if pid is None or not _proc_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if str(layout.ini_file(inst)).encode() in cmdline else None


def pid_of(layout: Layout, inst: Instance) -> int | None:
    if inst.role == "pgbouncer":
        return pgbouncer_pid(layout, inst)
    return postgres_pid(layout.data_dir(inst))


def port_taken(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: sockets in TIME_WAIT from a previous run do not count, listeners do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str:
    """Best-effort description of the process listening on `port`."""
    if not shutil.which("ss"):
        return "another process"
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if out:
        return out.splitlines()[0].split("users:", 1)[-1]
    # No listener: an outgoing connection got it as its local port (ephemeral port range).
    return "a connection's local port (choose ports outside net.ipv4.ip_local_port_range)"


def listener_pid(port: int) -> int | None:
    """PID of the process listening on `port` (from `ss`; None when it cannot tell)."""
    if not shutil.which("ss"):
        return None
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    pid = out.partition("pid=")[2].split(",")[0]
    return int(pid) if pid.isdigit() else None


def cluster_dir_serving(port: int) -> Path | None:
    """CLUSTER_DIR of the cluster whose postgres listens on `port`: a postmaster works in
    its data directory, CLUSTER_DIR/data/<name>. None when it is not such a cluster."""
    pid = listener_pid(port)
    if pid is None:
        return None
    try:
        data_dir = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    return data_dir.parent.parent if data_dir.parent.name == "data" else None


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    pg_bindir: Path
    pgbouncer: Path

    def pg(self, tool: str) -> str:
        return str(self.pg_bindir / tool)


def _find_pg_bindir(s: Settings) -> Path | None:
    if s.bindir_override:
        return Path(s.bindir_override)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.parent.name.split(".") if x.isdigit())

    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if candidates:
        return max(candidates, key=version)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _find_pgbouncer() -> Path | None:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    return Path(found) if found else None


def _apt_install() -> None:
    print("PostgreSQL or PgBouncer is missing: apt-get install -y postgresql pgbouncer ...")
    # Debian's packages start their own services (a pgbouncer on 6432 = one of our ports);
    # policy-rc.d exit 101 tells invoke-rc.d not to, for the duration of the install.
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql", "pgbouncer"]):
            if subprocess.run(cmd, env=env, check=False).returncode != 0:
                raise ClusterError(f"{shlex.join(cmd)} failed")
    finally:
        if created:
            policy.unlink()


def _locate(s: Settings) -> tuple[Binaries | None, str]:
    bindir, bouncer = _find_pg_bindir(s), _find_pgbouncer()
    if bindir is None or not (bindir / "pg_ctl").exists():
        return None, "the PostgreSQL server (initdb, pg_ctl)"
    if bouncer is None:
        return None, "pgbouncer"
    return Binaries(bindir, bouncer), ""


def find_binaries(s: Settings, install: bool = False) -> Binaries:
    """Locate initdb/pg_ctl/... and pgbouncer; install them with apt when root and allowed."""
    bins, missing = _locate(s)
    if bins is None and install and _is_root() and not s.bindir_override:
        _apt_install()
        bins, missing = _locate(s)
    if bins is None:
        raise ClusterError(
            f"{missing} not found: install it (sudo apt-get install postgresql pgbouncer) "
            "or point PG_BINDIR at the PostgreSQL bin directory"
        )
    return bins


# --------------------------------------------------------------------------- rendering


def render(template: str, **values: object) -> str:
    text = (TEMPLATES / template).read_text()
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def pgbouncer_databases(s: Settings, shard: int) -> str:
    """The [databases] section: D -> primary, D_replica -> replica, * -> primary."""
    primary, replica = s.primary_base_port + shard, s.replica_base_port + shard
    lines = []
    for db in s.databases:
        lines.append(f"{db} = host=127.0.0.1 port={primary} dbname={db}")
        lines.append(f"{db}_replica = host=127.0.0.1 port={replica} dbname={db}")
    lines.append(f"* = host=127.0.0.1 port={primary}")
    return "\n".join(lines)


def render_pgbouncer_ini(s: Settings, inst: Instance) -> str:
    layout = Layout(s.cluster_dir)
    assert inst.shard is not None
    return render(
        "pgbouncer/pgbouncer.ini.tmpl",
        shard=inst.shard,
        port=inst.port,
        databases=pgbouncer_databases(s, inst.shard),
        pidfile=layout.pid_file(inst),
        logfile=layout.log_file(inst),
        auth_file=layout.userlist,
    )


def render_postgresql_conf(inst: Instance) -> str:
    max_connections = 100 if inst.role == "control" else 400
    return render(
        "postgres/postgresql.conf.tmpl",
        name=inst.name,
        role=inst.role,
        port=inst.port,
        max_connections=max_connections,
    )


def _owner_ids() -> tuple[int, int]:
    if not _is_root():
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ClusterError(
            f"running as root needs an OS user {SUPERUSER!r} (apt-get install "
            "postgresql creates it)"
        ) from None
    return pw.pw_uid, pw.pw_gid


def write_if_changed(path: Path, text: str) -> bool:
    """Write a file owned by the cluster's owner; True when the content changed."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if _is_root():
        os.chown(tmp, *_owner_ids())
    tmp.replace(path)
    return True


def write_postgres_config(data_dir: Path, inst: Instance) -> bool:
    changed = write_if_changed(data_dir / "postgresql.conf", render_postgresql_conf(inst))
    hba = render("postgres/pg_hba.conf.tmpl", name=inst.name)
    return write_if_changed(data_dir / "pg_hba.conf", hba) or changed


# --------------------------------------------------------------------------- up


class Cluster:
    def __init__(self, s: Settings, bins: Binaries | None = None) -> None:
        self.s = s
        self.layout = Layout(s.cluster_dir)
        self.bins = bins

    # ---- helpers

    @property
    def b(self) -> Binaries:
        assert self.bins is not None
        return self.bins

    def psql(self, port: int, sql: str, db: str = "postgres", check: bool = True) -> str:
        """Run SQL (psql script syntax, \\gexec allowed) over TCP; returns unaligned output."""
        cmd = [self.b.pg("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        cmd += ["-p", str(port), "-U", SUPERUSER, "-d", db]
        return run(cmd, input=sql, timeout=60, check=check).stdout.strip()

    def as_owner(self, cmd: Sequence[str], check: bool = True) -> None:
        """Run a server-side tool as the cluster's owner, from inside CLUSTER_DIR."""
        run(cmd, owner=True, cwd=self.s.cluster_dir, check=check)

    def prepare_dirs(self) -> None:
        root = self.s.cluster_dir
        if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
            raise ClusterError(f"{root} exists and is not a cluster directory; set CLUSTER_DIR")
        uid, gid = _owner_ids()
        for d in (root, self.layout.data, self.layout.log, self.layout.run, self.layout.conf):
            d.mkdir(parents=True, exist_ok=True)
            if _is_root():
                os.chown(d, uid, gid)
                d.chmod(0o700)
        (root / MARKER).touch()
        if _is_root():
            # Every ancestor must be traversable by `postgres` (a 0700 home or pytest tmp is not).
            probe = run(["test", "-w", str(self.layout.data)], owner=True, check=False)
            if probe.returncode != 0:
                raise ClusterError(
                    f"user {SUPERUSER!r} cannot write {self.layout.data}: an ancestor directory "
                    "is not world-executable; choose another CLUSTER_DIR (e.g. under /tmp)"
                )

    def check_ports(self) -> None:
        """Fail before starting anything if one of our ports belongs to someone else."""
        taken = [
            f"  {inst.name} port {inst.port}: taken by {port_owner(inst.port)}"
            for inst in instances(self.s)
            if pid_of(self.layout, inst) is None and port_taken(inst.port)
        ]
        if taken:
            raise ClusterError(
                "ports needed by the cluster are in use by processes it did not start:\n"
                + "\n".join(taken)
                + "\nstop them (e.g. a Debian pgbouncer service: `service pgbouncer stop`) or set "
                "PRIMARY_BASE_PORT / REPLICA_BASE_PORT / PGBOUNCER_BASE_PORT / CONTROL_DB_PORT"
            )

    def start_postgres(self, inst: Instance) -> tuple[int, bool]:
        """Start the instance unless it runs; returns (pid, started_now)."""
        data = self.layout.data_dir(inst)
        pid = postgres_pid(data)
        if pid is not None:
            return pid, False
        lock = data / "postmaster.pid"
        if lock.exists():
            # A crash left the lock file. The postmaster refuses to start while the pid in it
            # exists, even as a zombie that a lazy init has not reaped yet, or reused by another
            # process. Once no process works in the data directory, the lock is only a leftover.
            deadline = time.monotonic() + 10
            while _processes_in(data):
                if time.monotonic() > deadline:
                    raise ClusterError(f"processes still run in {data}: {_processes_in(data)}")
                time.sleep(0.1)
            lock.unlink(missing_ok=True)
        log = self.layout.log_file(inst)
        try:
            pg_ctl = [self.b.pg("pg_ctl"), "-D", str(data), "-l", str(log), "-s"]
            self.as_owner([*pg_ctl, "-w", "-t", str(START_TIMEOUT), "start"])
        except ClusterError as exc:
            raise ClusterError(f"{inst.name} did not start ({exc}); see {log}") from None
        pid = postgres_pid(data)
        if pid is None:
            raise ClusterError(f"{inst.name} exited right after start; see {log}")
        return pid, True

    def initdb(self, inst: Instance) -> None:
        data = self.layout.data_dir(inst)
        tmp = data.with_name(data.name + ".initdb")
        shutil.rmtree(tmp, ignore_errors=True)
        # --no-sync only skips initdb's own fsync of the fresh files; the server keeps fsync on.
        # Collation C (fast, byte order) with a UTF-8 aware ctype so lower()/ILIKE handle Unicode.
        options = "--auth=trust -E UTF8 --locale=C --lc-ctype=C.UTF-8 --no-sync --no-instructions"
        self.as_owner([self.b.pg("initdb"), "-D", str(tmp), "-U", SUPERUSER, *options.split()])
        write_postgres_config(tmp, inst)
        tmp.rename(data)  # atomic: a half-made data directory never looks finished

    def ensure_databases(self, inst: Instance, names: Sequence[str], slot: str | None) -> None:
        """Create missing databases (and the replica's slot) in one idempotent psql call."""
        array = ", ".join("'" + n.replace("'", "''") + "'" for n in names)
        sql = ""
        if slot:
            sql += (
                f"SELECT 1 FROM pg_create_physical_replication_slot('{slot}') WHERE NOT EXISTS "
                f"(SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}');\n"
            )
        # CREATE DATABASE cannot run in a transaction block: \gexec runs each one on its own.
        sql += (
            f"SELECT format('CREATE DATABASE %I', d) FROM unnest(ARRAY[{array}]::text[]) AS d "
            "WHERE d NOT IN (SELECT datname FROM pg_database)\n\\gexec\n"
        )
        self.psql(inst.port, sql)

    def basebackup(self, primary: Instance, replica: Instance) -> None:
        data = self.layout.data_dir(replica)
        tmp = data.with_name(data.name + ".basebackup")
        shutil.rmtree(tmp, ignore_errors=True)
        assert primary.shard is not None
        # -c fast: an immediate checkpoint instead of waiting for a spread one. --no-sync, as
        # for initdb, skips only the tool's own fsync of the copy.
        source = ["-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER]
        options = ["-c", "fast", "-R", "-X", "stream", "-S", slot_name(primary.shard), "--no-sync"]
        self.as_owner([self.b.pg("pg_basebackup"), *source, "-D", str(tmp), *options])
        # The backup copied the primary's config (its port, its name): give the replica its own.
        write_postgres_config(tmp, replica)
        tmp.rename(data)

    def start_pgbouncer(self, inst: Instance) -> tuple[int, bool]:
        pid = pgbouncer_pid(self.layout, inst)
        if pid is not None:
            return pid, False
        ini = self.layout.ini_file(inst)
        self.layout.pid_file(inst).unlink(missing_ok=True)
        # runuser applies PAM limits (1024 open files); 10,000 clients need the hard limit.
        script = (
            f'ulimit -n "$(ulimit -Hn)"; exec {shlex.quote(str(self.b.pgbouncer))} -d '
            f"{shlex.quote(str(ini))}"
        )
        self.as_owner(["sh", "-c", script])
        deadline = time.monotonic() + START_TIMEOUT
        while (pid := pgbouncer_pid(self.layout, inst)) is None:
            if time.monotonic() > deadline:
                raise ClusterError(f"{inst.name} did not start; see {self.layout.log_file(inst)}")
            time.sleep(0.02)
        return pid, True

    def wait_pgbouncer(self, inst: Instance) -> None:
        """Wait until the PgBouncer answers and reaches both its primary and its replica."""
        deadline = time.monotonic() + START_TIMEOUT
        db = self.s.databases[0]
        while True:
            ok = all(
                self.psql(inst.port, "SELECT 1", db=name, check=False) == "1"
                for name in (db, f"{db}_replica")
            )
            if ok:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{inst.name} does not answer; see {self.layout.log_file(inst)}")
            time.sleep(0.1)

    # ---- the two kinds of unit that `up` runs in parallel

    def refresh_config(self, inst: Instance) -> None:
        """Re-render an existing instance's config; a running server reloads it, and restarts
        when a changed setting needs it (wal_level, the worker and sender limits)."""
        data = self.layout.data_dir(inst)
        if write_postgres_config(data, inst) and postgres_pid(data) is not None:
            self.as_owner([self.b.pg("pg_ctl"), "-D", str(data), "-s", "reload"])
            time.sleep(0.2)  # the postmaster rereads the file asynchronously
            pending = self.psql(
                inst.port, "SELECT count(*) FROM pg_settings WHERE pending_restart", check=False
            )
            if pending not in ("", "0"):
                self.as_owner([self.b.pg("pg_ctl"), "-D", str(data), "-s", "-w", "-m", "fast",
                               "restart", "-l", str(self.layout.log_file(inst))])  # fmt: skip
                print(f"{inst.name}: config changed and restarted")
            else:
                print(f"{inst.name}: config changed and reloaded")

    def up_control(self) -> list[tuple[Instance, int, bool]]:
        inst = instances(self.s)[0]
        if not (self.layout.data_dir(inst) / "PG_VERSION").exists():
            self.initdb(inst)
        else:
            self.refresh_config(inst)
        pid, started = self.start_postgres(inst)
        self.ensure_databases(inst, self.s.control_databases, None)
        return [(inst, pid, started)]

    def up_shard(self, shard: int) -> list[tuple[Instance, int, bool]]:
        primary, replica, bouncer = shard_instances(self.s, shard)
        pdata, rdata = self.layout.data_dir(primary), self.layout.data_dir(replica)
        if (pdata / "PG_VERSION").exists() and (rdata / "PG_VERSION").exists():
            # A standby's worker and sender limits may not be below its primary's: the
            # replica takes a new config first.
            self.refresh_config(replica)
        if not (pdata / "PG_VERSION").exists():
            # A replica of a primary that no longer exists cannot follow the new one.
            self.stop_postgres(rdata)
            shutil.rmtree(rdata, ignore_errors=True)
            self.initdb(primary)
        else:
            self.refresh_config(primary)
        ppid, pstarted = self.start_postgres(primary)
        self.ensure_databases(primary, self.s.databases, slot_name(shard))

        if not (rdata / "PG_VERSION").exists():
            self.basebackup(primary, replica)
        else:
            self.refresh_config(replica)
        rpid, rstarted = self.start_postgres(replica)

        ini_changed = write_if_changed(
            self.layout.ini_file(bouncer), render_pgbouncer_ini(self.s, bouncer)
        )
        bpid, bstarted = self.start_pgbouncer(bouncer)
        if ini_changed and not bstarted:
            os.kill(bpid, signal.SIGHUP)  # PgBouncer re-reads its ini (pool sizes, databases)
            print(f"{bouncer.name}: config changed and reloaded")
        self.wait_pgbouncer(bouncer)
        return [(primary, ppid, pstarted), (replica, rpid, rstarted), (bouncer, bpid, bstarted)]

    def up(self) -> list[tuple[Instance, int, bool]]:
        """Bring every process up (idempotent); returns (instance, pid, started_now)."""
        self.prepare_dirs()
        userlist = render("pgbouncer/userlist.txt.tmpl", user=SUPERUSER)
        write_if_changed(self.layout.userlist, userlist)
        self.check_ports()
        units: list[Callable[[], list[tuple[Instance, int, bool]]]] = [self.up_control]
        units += [lambda i=i: self.up_shard(i) for i in range(self.s.shards)]
        results: list[tuple[Instance, int, bool]] = []
        errors: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(units)) as pool:
            for fut in [pool.submit(u) for u in units]:
                try:
                    results += fut.result()
                except ClusterError as exc:
                    errors.append(str(exc))
        if errors:
            raise ClusterError("\n".join(errors))
        order = {inst: n for n, inst in enumerate(instances(self.s))}
        return sorted(results, key=lambda r: order[r[0]])

    # ---- down / clean

    def stop_pgbouncer(self, pid_file: Path) -> int | None:
        pid = _read_pid(pid_file)
        if pid is None or not _proc_alive(pid):
            pid_file.unlink(missing_ok=True)
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if b"pgbouncer" not in cmdline:  # pid reused by an unrelated process
            pid_file.unlink(missing_ok=True)
            return None
        # SIGTERM is an immediate shutdown up to PgBouncer 1.20; from 1.21 the first one waits
        # for clients and a second one is immediate. No state is lost either way.
        for sig in (signal.SIGTERM, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_gone(pid, 0.5):
                break
        if not _wait_gone(pid, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        pid_file.unlink(missing_ok=True)
        return pid

    def stop_postgres(self, data_dir: Path) -> int | None:
        pid = postgres_pid(data_dir)
        if pid is None:
            return None
        stop = [self.b.pg("pg_ctl"), "-D", str(data_dir), "-w", "-t", "30", "-s", "stop", "-m"]
        try:
            self.as_owner([*stop, "fast"])
        except ClusterError:
            self.as_owner([*stop, "immediate"], check=False)
        return pid

    def down(self) -> list[tuple[str, int]]:
        """Stop every process this cluster directory holds (whatever SHARDING_COUNT is now)."""
        stopped: list[tuple[str, int]] = []
        if self.layout.run.is_dir():
            for pid_file in sorted(self.layout.run.glob("*.pid")):
                if (pid := self.stop_pgbouncer(pid_file)) is not None:
                    stopped.append((pid_file.stem, pid))
        data_dirs = (
            [d for d in sorted(self.layout.data.glob("*")) if (d / "PG_VERSION").exists()]
            if self.layout.data.is_dir()
            else []
        )
        running = [d for d in data_dirs if postgres_pid(d) is not None]
        if running and self.bins is None:
            self.bins = find_binaries(self.s)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            for d, pid in zip(running, pool.map(self.stop_postgres, running), strict=True):
                if pid is not None:
                    stopped.append((d.name, pid))
        return stopped

    def clean(self) -> list[tuple[str, int]]:
        stopped = self.down()
        root = self.s.cluster_dir
        if root.exists():
            if any(root.iterdir()) and not (root / MARKER).exists():
                raise ClusterError(f"refusing to delete {root}: it is not a cluster directory")
            shutil.rmtree(root)
        return stopped


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _proc_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- reports


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _state(layout: Layout, inst: Instance, pid: int | None) -> str:
    if pid is None:
        return "down"
    if inst.role == "pgbouncer":
        return "up"
    # Line 8 of postmaster.pid: starting | ready | standby | stopping.
    with contextlib.suppress(OSError, IndexError):
        lines = (layout.data_dir(inst) / "postmaster.pid").read_text().splitlines()
        return f"up ({lines[7].strip()})"
    return "up"


def replication_rows(c: Cluster) -> list[list[object]]:
    rows: list[list[object]] = []
    for shard in range(c.s.shards):
        primary, replica, _ = shard_instances(c.s, shard)
        row: list[object] = [shard, primary.port, replica.port]
        if pid_of(c.layout, primary) is None:
            rows.append(row + ["primary down", None, None, None, None])
            continue
        out = c.psql(
            primary.port,
            (
                "SELECT r.state, r.sent_lsn, r.replay_lsn, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn) "
                "FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid "
                f"WHERE s.slot_name = '{slot_name(shard)}'"
            ),
            check=False,
        )
        if not out:
            rows.append(row + ["not streaming", None, None, None, None])
            continue
        state, sent, replay, lag_bytes = out.splitlines()[0].split("|")
        lag_s: object = 0
        if lag_bytes not in ("", "0") and pid_of(c.layout, replica) is not None:
            # replay_lag stays NULL while replay is paused: compare LSNs and ask the replica.
            seconds = c.psql(
                replica.port,
                "SELECT coalesce(extract(epoch FROM now() - "
                "pg_last_xact_replay_timestamp()), 0)::numeric(12,3)",
                check=False,
            )
            lag_s = seconds or None
        rows.append(row + [state, sent, replay, lag_bytes or None, lag_s])
    return rows


# What the API sends to each process (messenger/settings.py defaults).
API_PATH = {
    "control": "Django's own tables",
    "primary": "via its pgbouncer",
    "replica": "reads, directly",
    "pgbouncer": "writes, primary reads",
}


def running_cluster(c: Cluster) -> Cluster:
    """The cluster `ps`, `stats` and `logs` show: this CLUSTER_DIR's; or, when none of its
    processes runs but its control port answers, the cluster that serves that port, started
    from another CLUSTER_DIR (another checkout), saying so on stderr."""
    port = c.s.control_port
    if any(pid_of(c.layout, inst) for inst in instances(c.s)) or not port_taken(port):
        return c
    found = cluster_dir_serving(port)
    if found is None or found == c.s.cluster_dir:
        print(
            f"cluster: nothing runs from {c.s.cluster_dir}, but port {port} is taken by "
            f"{port_owner(port)}: set CLUSTER_DIR to the directory of the cluster it belongs to",
            file=sys.stderr,
        )
        return c
    print(
        f"cluster: port {port} is served by the cluster started from {found}, not by "
        f"{c.s.cluster_dir}; showing it (run the command there, or set CLUSTER_DIR={found})",
        file=sys.stderr,
    )
    return Cluster(dataclasses.replace(c.s, cluster_dir=found))


def cmd_ps(c: Cluster) -> None:
    rows = []
    for inst in instances(c.s):
        pid = pid_of(c.layout, inst)
        state = _state(c.layout, inst, pid)
        rows.append([inst.role, inst.shard, inst.port, inst.name, pid, state, API_PATH[inst.role]])
    print_table(["role", "shard", "port", "name", "pid", "state", "api"], rows)
    print()
    c.bins = c.bins or find_binaries(c.s)
    print_table(
        ["shard", "primary", "replica", "state", "sent_lsn", "replay_lsn", "lag_bytes", "lag_s"],
        replication_rows(c),
    )


def _children(pids: set[int]) -> set[int]:
    """`pids` and all their descendants (postgres backends are children of the postmaster)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += parents.get(pid, [])
    return out


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    return 0


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB; PSS splits shared buffers fairly between the processes mapping them."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def cmd_stats(c: Cluster, interval: float = 1.0) -> None:
    groups = {
        inst: _children({pid})
        for inst in instances(c.s)
        if (pid := pid_of(c.layout, inst)) is not None
    }
    if not groups:
        print("cluster is down")
        return
    before = {p: _cpu_ticks(p) for pids in groups.values() for p in pids}
    time.sleep(interval)
    hz = os.sysconf("SC_CLK_TCK")
    rows, totals = [], {}
    for inst, pids in groups.items():
        cpu = sum(_cpu_ticks(p) - before.get(p, 0) for p in pids) / hz / interval * 100
        rss, pss = (sum(x) for x in zip(*(_memory_kb(p) for p in pids), strict=True))
        rows.append([inst.role, inst.name, len(pids), f"{cpu:.1f}", rss // 1024, pss // 1024])
        t = totals.setdefault(inst.role, [0, 0.0, 0, 0])
        t[0] += len(pids)
        t[1] += cpu
        t[2] += rss
        t[3] += pss
    print_table(["role", "name", "procs", "cpu%", "rss_mb", "pss_mb"], rows)
    print()
    total_rows = [
        [role, t[0], f"{t[1]:.1f}", t[2] // 1024, t[3] // 1024] for role, t in totals.items()
    ]
    grand = [sum(t[i] for t in totals.values()) for i in range(4)]
    total_rows.append(["total", grand[0], f"{grand[1]:.1f}", grand[2] // 1024, grand[3] // 1024])
    print_table(["role", "procs", "cpu%", "rss_mb", "pss_mb"], total_rows)


def cmd_logs(c: Cluster, follow: bool, lines: int, names: Sequence[str]) -> None:
    files = sorted(c.layout.log.glob("*.log")) if c.layout.log.is_dir() else []
    if names:
        files = [f for f in files if f.stem in names]
    if not files:
        raise ClusterError(f"no log files under {c.layout.log}")
    if follow:
        os.execvp("tail", ["tail", "-n", str(lines), "-F", *map(str, files)])
    for f in files:
        print(f"==> {f} <==")
        with f.open(errors="replace") as fh:
            print("".join(collections.deque(fh, maxlen=lines)))


def cmd_shell(c: Cluster, args: argparse.Namespace) -> None:
    if args.control:
        port, db = c.s.control_port, args.db or c.s.control_databases[0]
    elif args.pgbouncer:
        port = c.s.pgbouncer_base_port + args.shard
        db = args.db or c.s.databases[0] + ("_replica" if args.replica else "")
    else:
        base = c.s.replica_base_port if args.replica else c.s.primary_base_port
        port, db = base + args.shard, args.db or c.s.databases[0]
    if not args.control and not 0 <= args.shard < c.s.shards:
        raise ClusterError(f"SHARD must be between 0 and {c.s.shards - 1}")
    psql = find_binaries(c.s).pg("psql")
    os.execve(
        psql, [psql, "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", db], _clean_env()
    )


def cmd_env(c: Cluster) -> None:
    s = c.s
    try:
        bins: Binaries | None = find_binaries(s)
    except ClusterError:
        bins = None
    values = {
        "SHARDING_COUNT": s.shards,
        "CLUSTER_DIR": s.cluster_dir,
        "PRIMARY_BASE_PORT": s.primary_base_port,
        "REPLICA_BASE_PORT": s.replica_base_port,
        "PGBOUNCER_BASE_PORT": s.pgbouncer_base_port,
        "CONTROL_DB_PORT": s.control_port,
        "CLUSTER_DATABASES": " ".join(s.databases),
        "CONTROL_DATABASES": " ".join(s.control_databases),
        "PG_BINDIR": bins.pg_bindir if bins else "",
        "PGBOUNCER": bins.pgbouncer if bins else "",
    }
    for key, value in values.items():
        print(f"{key}={shlex.quote(str(value))}")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start everything (idempotent), wait until all answer")
    sub.add_parser("down", help="stop every process of the cluster")
    sub.add_parser("clean", help="down, then delete CLUSTER_DIR")
    sub.add_parser("ps", help="processes and replication state")
    stats = sub.add_parser("stats", help="CPU and memory of the cluster's processes")
    stats.add_argument("--interval", type=float, default=1.0, help="CPU sampling seconds")
    logs = sub.add_parser("logs", help="tail the cluster's log files")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("names", nargs="*", help="only these (e.g. shard-0 pgbouncer-0)")
    shell = sub.add_parser("shell", help="psql on a shard (primary, replica) or the control DB")
    shell.add_argument("--shard", type=int, default=0)
    shell.add_argument("--replica", action="store_true")
    shell.add_argument("--pgbouncer", action="store_true", help="through the shard's PgBouncer")
    shell.add_argument("--control", action="store_true")
    shell.add_argument("--db", help="database (default: the first of CLUSTER_DATABASES)")
    sub.add_parser("env", help="print the resolved settings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `ps | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "up":
            t0 = time.monotonic()
            cluster = Cluster(settings, find_binaries(settings, install=True))
            results = cluster.up()
            print_table(
                ["role", "shard", "port", "name", "pid", "state"],
                [
                    [i.role, i.shard, i.port, i.name, pid, "started" if new else "running"]
                    for i, pid, new in results
                ],
            )
            started = sum(new for _, _, new in results)
            print(
                f"cluster up in {time.monotonic() - t0:.1f}s "
                f"({started} started, {len(results) - started} already running)"
            )
            return 0
        cluster = Cluster(settings)
        if args.command in ("down", "clean"):
            stopped = cluster.down() if args.command == "down" else cluster.clean()
            names = ", ".join(name for name, _ in stopped) or "nothing was running"
            print(f"stopped: {names}")
            if args.command == "clean":
                print(f"removed {settings.cluster_dir}")
        elif args.command == "ps":
            cmd_ps(running_cluster(cluster))
        elif args.command == "stats":
            cmd_stats(running_cluster(cluster), args.interval)
        elif args.command == "logs":
            cmd_logs(running_cluster(cluster), args.follow, args.lines, args.names)
        elif args.command == "shell":
            cmd_shell(cluster, args)
        elif args.command == "env":
            cmd_env(cluster)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

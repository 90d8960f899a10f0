"""A second, small cluster (3 shards, other ports) with its own API server, for tests that
stop and start real processes without disturbing the cluster the other tests use."""

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

from tests.blackhole import BlackholeProxy

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 3
# Two checkouts testing at once on one machine set different offsets (ports of this cluster).
_OFFSET = int(os.environ.get("FAULT_PORT_OFFSET", "0"))
ENV = {
    "SHARDING_COUNT": str(SHARDS),
    "CLUSTER_DIR": str(ROOT / "var" / "fault-cluster"),
    "PRIMARY_BASE_PORT": str(25440 + _OFFSET),
    "REPLICA_BASE_PORT": str(25450 + _OFFSET),
    "PGBOUNCER_BASE_PORT": str(26430 + _OFFSET),
    "CONTROL_DB_PORT": str(25439 + _OFFSET),
    "CLUSTER_DATABASES": "messenger",
}
API_PORT = 18081 + _OFFSET


def _launcher():
    spec = importlib.util.spec_from_file_location("cluster_launcher", ROOT / "database/cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cluster_launcher"] = module
    spec.loader.exec_module(module)
    return module


def die_with_parent() -> None:
    """preexec_fn for test servers: SIGTERM them when the test process dies, so a killed
    test run never leaves a server holding its port (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


class FaultCluster:
    def __init__(
        self,
        proxied_shard: int | None = None,
        *,
        env: dict[str, str] | None = None,
        api_port: int = API_PORT,
        api_log: str = "fault-api.log",
    ) -> None:
        """`proxied_shard`: the API reaches that shard's PgBouncer and replica through
        black-hole proxies (`self.proxies["pgbouncer"|"replica"].partition()`).
        `env`, `api_port`, `api_log`: another cluster (its launcher settings, shard count
        included in SHARDING_COUNT), API port and log file under var/; by default the
        3-shard fault cluster of this module."""
        self.proxied_shard = proxied_shard
        self.proxies: dict[str, BlackholeProxy] = {}
        self.env = dict(ENV if env is None else env)
        self.shards = int(self.env["SHARDING_COUNT"])
        self.api_port = api_port
        self.api_log = ROOT / "var" / api_log
        self.launcher = _launcher()
        self.settings = self.launcher.load_settings({**os.environ, **self.env})
        self.cluster = self.launcher.Cluster(
            self.settings, self.launcher.find_binaries(self.settings)
        )
        self.layout = self.launcher.Layout(self.settings.cluster_dir)
        self.api: subprocess.Popen | None = None
        self.base_url = f"http://127.0.0.1:{api_port}"

    def _instance(self, name: str):
        return next(i for i in self.launcher.instances(self.settings) if i.name == name)

    # --- processes ------------------------------------------------------------------------
    def _launcher_command(self, command: str) -> None:
        subprocess.run(
            [sys.executable, "database/cluster.py", command],
            cwd=ROOT,
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
        )

    def up(self) -> None:
        self._launcher_command("up")

    def down(self) -> None:
        self._launcher_command("down")

    def stop(self, name: str) -> None:
        """Stop one process: `shard-1`, `shard-1-replica` or `pgbouncer-1`."""
        instance = self._instance(name)
        if instance.role == "pgbouncer":
            self.cluster.stop_pgbouncer(self.layout.pid_file(instance))
        else:
            self.cluster.stop_postgres(self.layout.data_dir(instance))

    def start_proxies(self) -> None:
        if self.proxied_shard is None or self.proxies:
            return
        shard = self.proxied_shard
        self.proxies = {
            "pgbouncer": BlackholeProxy(int(self.env["PGBOUNCER_BASE_PORT"]) + shard).start(),
            "replica": BlackholeProxy(int(self.env["REPLICA_BASE_PORT"]) + shard).start(),
        }

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def stop_proxies(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies = {}

    def _proxied_urls(self) -> dict[str, str]:
        if not self.proxies:
            return {}
        shard, url = self.proxied_shard, "postgres://postgres@127.0.0.1:{}/messenger"
        return {
            f"SHARD_{shard}_URL": url.format(self.proxies["pgbouncer"].port),
            f"SHARD_{shard}_REPLICA_URL": url.format(self.proxies["replica"].port),
        }

    def app_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "SHARDING_COUNT": str(self.shards),
            "PGBOUNCER_BASE_PORT": self.env["PGBOUNCER_BASE_PORT"],
            "REPLICA_BASE_PORT": self.env["REPLICA_BASE_PORT"],
            "SHARD_DB_NAME": "messenger",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.env['CONTROL_DB_PORT']}/control",
            "DJANGO_ENV": "test",
            "PORT": str(self.api_port),
            "WEB_CONCURRENCY": "1",
            "REPLICA_CHECK_INTERVAL": "0.2",
            "REPLICA_MAX_LAG": "2",
            "LOG_LEVEL": "warning",
            **self._proxied_urls(),
            **extra,
        }

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate_shards", "-v", "0"],
            cwd=ROOT,
            env=self.app_env(),
            check=True,
            capture_output=True,
        )
        for shard in range(self.shards):
            with self.primary(shard) as conn:
                conn.execute("TRUNCATE users, email_lookup CASCADE")

    def start_api(self, **extra_env: str) -> None:
        self.start_proxies()
        with socket.socket() as sock:
            busy = sock.connect_ex(("127.0.0.1", self.api_port)) == 0
            assert not busy, f"port {self.api_port} is busy"
        log = open(self.api_log, "w")  # noqa: SIM115 - child keeps it
        self.api = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"],
            cwd=ROOT,
            env=self.app_env(**extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/health", timeout=5).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        stop_process_group(self.api)
        raise RuntimeError("fault-cluster API did not start")

    def stop_api(self) -> None:
        if self.api is not None:
            stop_process_group(self.api)
        self.stop_proxies()

    # --- direct database access --------------------------------------------------------------
    def primary(self, shard: int) -> psycopg.Connection:
        port = int(self.env["PRIMARY_BASE_PORT"]) + shard
        return psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="messenger", autocommit=True
        )

    def replica(self, shard: int) -> psycopg.Connection:
        port = int(self.env["REPLICA_BASE_PORT"]) + shard
        return psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="messenger", autocommit=True
        )

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if requests.get(f"{self.base_url}/health/ready", timeout=5).status_code == 200:
                return
            time.sleep(0.2)
        raise AssertionError("fault cluster did not become ready")


@contextlib.contextmanager
def running(cluster: FaultCluster, **api_env: str):
    """The cluster up, migrated and empty, with its API started and ready; all of it
    stopped afterwards (a module-scoped fixture of each fault test module)."""
    cluster.up()
    cluster.migrate()
    cluster.start_api(**api_env)
    cluster.wait_ready()
    try:
        yield cluster
    finally:
        cluster.stop_api()
        cluster.down()

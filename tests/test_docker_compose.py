"""docker-compose.yml describes the same cluster as the local launcher (database/cluster.py).

Neither Docker nor a running cluster is needed: the file is parsed and compared with the
launcher's defaults and with the PostgreSQL and PgBouncer templates the launcher renders.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# Settings that legitimately differ inside a container network.
POSTGRES_LOCAL_ONLY = {"listen_addresses", "port", "unix_socket_directories", "cluster_name"}
PGBOUNCER_LOCAL_ONLY = {"listen_addr", "listen_port", "pidfile", "logfile", "auth_file"}


def _load_launcher():
    spec = importlib.util.spec_from_file_location("cluster_launcher", REPO / "database/cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()
DEFAULTS = launcher.load_settings({})
SHARDS = range(DEFAULTS.shards)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def published(service: dict) -> list[tuple[int, int]]:
    """(host port, container port) pairs of a service's `ports`."""
    pairs = []
    for spec in service.get("ports", []):
        host, container = str(spec).rsplit(":", 2)[-2:]
        pairs.append((int(host), int(container)))
    return pairs


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keep case
    parser.read_string("\n".join(ln for ln in text.splitlines() if not ln.startswith("%")))
    return parser


def local_pgbouncer_settings() -> dict[str, str]:
    inst = next(i for i in launcher.instances(DEFAULTS) if i.role == "pgbouncer")
    return dict(ini(launcher.render_pgbouncer_ini(DEFAULTS, inst))["pgbouncer"])


def local_postgres_settings() -> dict[str, str]:
    inst = next(i for i in launcher.instances(DEFAULTS) if i.role == "primary")
    settings = {}
    for line in launcher.render_postgresql_conf(inst).splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value.strip("'")
    return settings


def command_settings(command: list[str]) -> dict[str, str]:
    """The `-c key=value` flags of a postgres command line."""
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_launcher_defaults_are_the_seed_topology():
    assert DEFAULTS.shards == 5
    assert (DEFAULTS.primary_base_port, DEFAULTS.replica_base_port) == (5440, 5450)
    assert (DEFAULTS.pgbouncer_base_port, DEFAULTS.control_port) == (6430, 5439)
    assert DEFAULTS.databases == ("messenger", "messenger_test")
    assert DEFAULTS.control_databases == ("control",)


def test_compose_has_a_service_per_launcher_process_on_the_same_published_ports(compose):
    services = compose["services"]
    for inst in launcher.instances(DEFAULTS):
        inner = 6432 if inst.role == "pgbouncer" else 5432
        assert published(services[inst.name]) == [(inst.port, inner)], inst.name
    assert published(services["messenger_server"]) == [(8080, 8080)]
    assert published(services["redis"]) == [(6379, 6379)]


def test_database_ports_are_published_on_loopback_only(compose):
    for inst in launcher.instances(DEFAULTS):
        for spec in compose["services"][inst.name]["ports"]:
            assert str(spec).startswith("127.0.0.1:"), (inst.name, spec)


def test_redis_is_optional_behind_a_profile(compose):
    assert compose["services"]["redis"]["profiles"] == ["redis"]
    assert all("profiles" not in s for name, s in compose["services"].items() if name != "redis")


def test_every_postgres_service_runs_the_template_settings(compose):
    expected = {k: v for k, v in local_postgres_settings().items() if k not in POSTGRES_LOCAL_ONLY}
    assert {"timezone", "hot_standby_feedback", "max_slot_wal_keep_size"} <= set(expected)
    for inst in launcher.instances(DEFAULTS):
        if inst.role in ("primary", "replica"):
            actual = command_settings(compose["services"][inst.name]["command"])
            assert {k: actual.get(k) for k in expected} == expected, inst.name


def test_primaries_create_the_cluster_databases_and_their_replica_slot(compose):
    for shard in SHARDS:
        env = compose["services"][f"shard-{shard}"]["environment"]
        assert env["DATABASES"].split() == list(DEFAULTS.databases)
        assert env["REPLICATION_SLOT"] == launcher.slot_name(shard)
    control = compose["services"]["control-db"]["environment"]
    assert control["DATABASES"].split() == list(DEFAULTS.control_databases)
    init = compose["configs"]["postgres-init"]["content"]
    assert "pg_create_physical_replication_slot" in init
    assert "host replication all all trust" in init


def test_replicas_clone_their_own_primary_through_its_slot(compose):
    script = compose["configs"]["replica-entrypoint"]["content"]
    assert "pg_basebackup" in script
    assert re.search(r"-c fast -R -X stream -S", script)
    for shard in SHARDS:
        replica = compose["services"][f"shard-{shard}-replica"]
        assert replica["environment"]["PRIMARY_HOST"] == f"shard-{shard}"
        assert replica["environment"]["REPLICATION_SLOT"] == launcher.slot_name(shard)
        assert replica["depends_on"] == {f"shard-{shard}": {"condition": "service_healthy"}}


def test_pgbouncer_settings_match_the_launcher_template(compose):
    local = {k: v for k, v in local_pgbouncer_settings().items() if k not in PGBOUNCER_LOCAL_ONLY}
    docker = dict(ini(compose["configs"]["pgbouncer-common"]["content"])["pgbouncer"])
    assert {k: docker.get(k) for k in local} == local
    assert docker["pool_mode"] == "transaction"
    assert docker["max_client_conn"] == "10000"


def test_each_pgbouncer_maps_d_to_its_primary_and_d_replica_to_its_replica(compose):
    for shard in SHARDS:
        service = compose["services"][f"pgbouncer-{shard}"]
        targets = {c["target"]: c["source"] for c in service["configs"]}
        text = compose["configs"][targets["/etc/pgbouncer/pgbouncer.ini"]]["content"]
        assert text.startswith("%include /etc/pgbouncer/common.ini\n")
        assert (
            compose["configs"][targets["/etc/pgbouncer/common.ini"]]
            == compose["configs"]["pgbouncer-common"]
        )
        databases = dict(ini(text)["databases"])
        expected = {"*": f"host=shard-{shard} port=5432"}
        for db in DEFAULTS.databases:
            expected[db] = f"host=shard-{shard} port=5432 dbname={db}"
            expected[f"{db}_replica"] = f"host=shard-{shard}-replica port=5432 dbname={db}"
        assert databases == expected
        # The local launcher's [databases] have the same names.
        bouncer = launcher.shard_instances(DEFAULTS, shard)[2]
        assert set(ini(launcher.render_pgbouncer_ini(DEFAULTS, bouncer))["databases"]) == set(
            expected
        )


def test_userlist_names_postgres_with_an_empty_password(compose):
    local = launcher.render("pgbouncer/userlist.txt.tmpl", user="postgres")
    assert compose["configs"]["pgbouncer-userlist"]["content"] == local == '"postgres" ""\n'


def test_the_api_service_is_built_from_the_dockerfile_and_waits_for_every_pgbouncer(compose):
    server = compose["services"]["messenger_server"]
    assert server["build"] == "."
    needed = {f"pgbouncer-{i}" for i in SHARDS} | {"control-db", "migrate"}
    assert set(server["depends_on"]) == needed
    assert server["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert compose["services"]["migrate"]["command"][-1] == "migrate_shards"
    env = server["environment"]
    assert env["SHARDING_COUNT"] == str(DEFAULTS.shards)
    assert env["HOST"] == "0.0.0.0"  # gunicorn binds 127.0.0.1 unless told otherwise
    assert env["DATABASE_URL"].endswith(f"@control-db:5432/{DEFAULTS.control_databases[0]}")
    for shard in SHARDS:
        url = f"postgres://postgres@pgbouncer-{shard}:6432/{DEFAULTS.databases[0]}"
        assert env[f"SHARD_{shard}_URL"] == url
        # Replicas directly, not through the primary's PgBouncer: they must stay readable
        # when it is gone.
        replica = f"postgres://postgres@shard-{shard}-replica:5432/{DEFAULTS.databases[0]}"
        assert env[f"SHARD_{shard}_REPLICA_URL"] == replica


def test_settings_reach_primaries_through_pgbouncer_and_replicas_directly():
    """Without SHARD_<i>_URL, the API reaches what the launcher starts: the primary through
    its PgBouncer, the replica on its own port (readable when that PgBouncer is gone)."""
    from django.conf import settings

    for shard in range(settings.SHARDING_COUNT):
        if os.environ.keys() & {f"SHARD_{shard}_URL", f"SHARD_{shard}_REPLICA_URL"}:
            continue  # explicit addresses win
        primary = settings.DATABASES[f"shard_{shard}"]
        replica = settings.DATABASES[f"shard_{shard}_replica"]
        assert int(primary["PORT"]) == settings.PGBOUNCER_BASE_PORT + shard
        assert int(replica["PORT"]) == settings.REPLICA_BASE_PORT + shard
        assert replica["NAME"] == primary["NAME"]  # same database, other server


def test_dockerfile_installs_the_runtime_lock_only_and_runs_gunicorn_as_a_user():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "pip install -r requirements.lock" in text
    code = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any("requirements-dev.lock" in line for line in code)
    assert re.search(r"^USER app$", text, re.M)
    assert re.search(r'^    CMD \["python", "scripts/healthcheck.py"\]$', text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert 'CMD ["gunicorn", "-c", "messenger/gunicorn.conf.py", "messenger.wsgi"]' in text


def test_local_settings_and_secrets_stay_out_of_the_image_and_the_repository():
    assert ".env" in (REPO / ".dockerignore").read_text().split()
    assert ".env" in (REPO / ".gitignore").read_text().split()


def env_file(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_api_runs_production_settings_from_the_env_file_and_the_secret_from_outside(compose):
    example = env_file(REPO / ".env.example")
    assert example["DJANGO_ENV"] == "production"
    assert example["API_AUTH"] == "required"
    assert int(example["WEB_CONCURRENCY"]) >= 1
    assert "SECRET_KEY" not in example
    for name in ("migrate", "messenger_server"):
        service = compose["services"][name]
        assert [f["path"] for f in service["env_file"]] == [".env.example", ".env"]
        assert service["env_file"][1]["required"] is False
        assert service["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")


def test_the_api_service_has_the_readiness_healthcheck(compose):
    check = compose["services"]["messenger_server"]["healthcheck"]
    assert check["test"] == ["CMD", "python", "scripts/healthcheck.py"]
    script = (REPO / "scripts" / "healthcheck.py").read_text()
    assert "/health/ready" in script and "HEALTHCHECK_API_KEY" in script

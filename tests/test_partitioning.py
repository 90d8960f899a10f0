"""The SQL the guides give, run on a real shard: docs/PARTITIONING_GUIDE.md (its scripts, its
figures, its procedure), the slot expression of docs/SHARDING_GUIDE.md and the safe column
addition of docs/MIGRATIONS.md.

Everything runs in a throwaway database on shard 0's primary (reached directly, as user
postgres), created with the users migrations' SQL and dropped at the end."""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from shards.routing import slot_for_key

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "PARTITIONING_GUIDE.md"
COMPARE_SQL = ROOT / "scripts" / "partition_compare.sql"
EVENTS_SQL = ROOT / "scripts" / "partition_user_events.sql"
TIMING_SQL = ROOT / "scripts" / "partition_timing.sql"
PORT = int(os.environ.get("PRIMARY_BASE_PORT", "5440"))
ROWS = 200_000  # the guide's figures are for this many rows
ANN = "123e4567-e89b-12d3-a456-426614174000"  # the guide's example user


def _psql_binary() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), key=lambda p: p.parts[-3])
    return str(found[-1]) if found else shutil.which("psql") or "psql"


def psql(db: str, *, sql: str | None = None, file: Path | None = None, **variables):
    cmd = [_psql_binary(), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
    cmd += ["-p", str(PORT), "-U", "postgres", "-d", db]
    for name, value in variables.items():
        cmd += ["-v", f"{name}={value}"]
    if file is not None:
        cmd += ["-f", str(file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env, timeout=300)


def connect(db: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=db, autocommit=True)


def users_schema_sql() -> str:
    """The SQL of every users migration, as `manage.py sqlmigrate` prints it."""
    names = sorted(p.stem for p in (ROOT / "users" / "migrations").glob("0*.py"))
    out = []
    for name in names:
        result = subprocess.run(
            [sys.executable, "manage.py", "sqlmigrate", "users", name, "--database", "shard_0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(result.stdout)
    return "\n".join(out)


@pytest.fixture(scope="module")
def scratch():
    """A database on shard 0's primary with the shard schema and both scripts applied."""
    name = f"scratch_docs_{uuid.uuid4().hex[:10]}"
    with connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        steps = [
            psql(name, sql=users_schema_sql()),
            psql(name, file=COMPARE_SQL, rows=ROWS),
            psql(name, file=EVENTS_SQL),
        ]
        for step in steps:
            assert step.returncode == 0, step.stderr
        yield name
    finally:
        with connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql_blocks(path: Path) -> list[str]:
    return re.findall(r"(?ms)^ *```sql\n(.*?)^ *```", path.read_text())


def plan(db: str, query: str) -> dict:
    with connect(db) as conn:
        (doc,) = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}").fetchone()
    return (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]


def nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def scanned(node: dict, prefix: str) -> list[str]:
    """Partitions (or tables) whose scan actually ran."""
    return sorted(
        n["Relation Name"]
        for n in nodes(node)
        if n.get("Relation Name", "").startswith(prefix) and n.get("Actual Loops", 0) > 0
    )


# --------------------------------------------------------------------------- the guide's procedure


def test_every_sql_block_of_the_guide_runs_with_the_results_it_states(scratch):
    """Run in order; blocks marked `-- fails with: <message>` must fail with that message."""
    outputs = []
    for block in sql_blocks(GUIDE):
        result = psql(scratch, sql=block)
        expected = re.match(r"\s*-- fails with: (.+)", block)
        if expected:
            assert result.returncode != 0, block
            assert expected.group(1).strip() in result.stderr, result.stderr
        else:
            assert result.returncode == 0, f"{block}\n{result.stderr}"
        outputs.append((block, result.stdout))

    def output_of(fragment: str) -> str:
        return next(out for block, out in outputs if fragment in block)

    assert output_of("user_events_ensure_partitions('2025-01-01', 6)").split()[0] == "6"
    pruned = output_of("created_at >= '2025-05-01' AND created_at < '2025-07-01'")
    assert set(re.findall(r"user_events_\d{4}_\d{2}", pruned)) == {
        "user_events_2025_05",
        "user_events_2025_06",
    }
    assert output_of("user_events_drop_before('2025-03-01')").strip() == "2"
    assert output_of("DELETE FROM users WHERE id").split()[-1] == "0"  # the events cascaded
    with connect(scratch) as conn:
        months = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'user_events'::regclass"
            )
        }
    assert {"user_events_2025_01", "user_events_2025_02"}.isdisjoint(months)
    assert {f"user_events_2025_0{m}" for m in range(3, 7)} <= months


def test_the_events_script_is_idempotent_and_keeps_three_months_ahead(scratch):
    again = psql(scratch, file=EVENTS_SQL)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == "0"  # nothing left to create
    with connect(scratch) as conn:
        missing = conn.execute(
            "SELECT to_char(m, 'YYYY_MM') FROM generate_series("
            " date_trunc('month', current_date), date_trunc('month', current_date)"
            " + interval '2 months', interval '1 month') AS m"
            " WHERE to_regclass('user_events_' || to_char(m, 'YYYY_MM')) IS NULL"
        ).fetchall()
    assert not missing


def test_a_users_events_follow_the_user_and_old_months_drop_without_touching_others(scratch):
    user = uuid.uuid4()
    with connect(scratch) as conn:
        assert conn.execute("SELECT user_events_ensure_partitions('2024-01-01', 4)").fetchone()[0]
        conn.execute(
            "INSERT INTO users (id, name, email, created_at, updated_at)"
            " VALUES (%s, 'Bo', 'bo@example.com', now(), now())",
            [user],
        )
        conn.execute(
            "INSERT INTO user_events (user_id, created_at, kind) SELECT %s,"
            " timestamptz '2024-01-01' + n * interval '1 day', 'login'"
            " FROM generate_series(0, 119) AS n",
            [user],
        )
        assert conn.execute("SELECT user_events_drop_before('2024-03-01')").fetchone()[0] == 2
        left = conn.execute(
            "SELECT min(created_at)::date::text, count(*) FROM user_events WHERE user_id = %s",
            [user],
        ).fetchone()
        assert left == ("2024-03-01", 60)  # March and April (31 + 29 days of 2024)
        conn.execute("DELETE FROM users WHERE id = %s", [user])
        events = conn.execute("SELECT count(*) FROM user_events WHERE user_id = %s", [user])
        assert events.fetchone()[0] == 0
        conn.execute("SELECT user_events_drop_before('2024-05-01')")


# --------------------------------------------------------------------------- the guide's figures

QUERIES = {
    "Lookup by id": "SELECT * FROM {table} WHERE id = md5('4242')::uuid",
    "First page (21 rows)": "SELECT * FROM {table} ORDER BY created_at DESC, id DESC LIMIT 21",
    "Page after 2025-07-01 (21 rows)": (
        "SELECT * FROM {table} WHERE (created_at, id) < ('2025-07-01', md5('1')::uuid)"
        " ORDER BY created_at DESC, id DESC LIMIT 21"
    ),
}
TABLES = ("users_plain", "users_by_month", "users_by_hash")


def documented_buffers() -> dict[tuple[str, str], int]:
    text = GUIDE.read_text()
    assert f"Query ({ROWS:,} rows)" in text
    figures = {}
    for label in QUERIES:
        row = re.search(rf"(?m)^\| {re.escape(label)} \| (\d+) \| (\d+) \| (\d+) \|$", text)
        assert row, f"no row {label!r} in the guide's table"
        for table, value in zip(TABLES, row.groups(), strict=True):
            figures[(label, table)] = int(value)
    return figures


def test_every_buffer_count_in_the_guide_is_what_postgresql_reads(scratch):
    measured = {}
    for (label, table), _ in documented_buffers().items():
        top = plan(scratch, QUERIES[label].format(table=table))
        measured[(label, table)] = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert measured == documented_buffers()


def test_a_lookup_by_id_probes_every_month_but_one_hash_partition(scratch):
    query = QUERIES["Lookup by id"]
    months = scanned(plan(scratch, query.format(table="users_by_month")), "users_by_month_")
    assert len(months) == 12
    hashed = scanned(plan(scratch, query.format(table="users_by_hash")), "users_by_hash_")
    assert len(hashed) == 1


def test_a_deep_page_probes_the_newer_months_and_never_the_older_ones(scratch):
    query = QUERIES["Page after 2025-07-01 (21 rows)"]
    months = scanned(plan(scratch, query.format(table="users_by_month")), "users_by_month_")
    assert months == [f"users_by_month_2025_{m:02d}" for m in range(6, 13)]
    first_page = QUERIES["First page (21 rows)"].format(table="users_by_month")
    first = scanned(plan(scratch, first_page), "users_by_month_")
    assert first == ["users_by_month_2025_12"]


def test_a_page_of_hash_partitions_merges_every_partition(scratch):
    top = plan(scratch, QUERIES["Page after 2025-07-01 (21 rows)"].format(table="users_by_hash"))
    merge = next(n for n in nodes(top) if n["Node Type"] == "Merge Append")
    assert len(merge["Plans"]) == 8


def test_the_timing_script_shows_month_partitions_cost_several_plain_lookups(scratch):
    result = psql(scratch, file=TIMING_SQL, lookups=300)
    assert result.returncode == 0, result.stderr
    times = {}
    for line in result.stdout.splitlines():
        layout, _, rest = line.partition("|")
        if layout in TABLES:
            planning, execution = (float(x) for x in rest.split("|"))
            times[layout] = planning + execution
    assert set(times) == set(TABLES)
    assert times["users_by_month"] > 2 * times["users_plain"]


def test_the_size_per_user_is_as_documented(scratch):
    documented = int(re.search(r"takes (\d+) bytes per user", GUIDE.read_text()).group(1))
    with connect(scratch) as conn:
        size = conn.execute("SELECT pg_total_relation_size('users_plain')").fetchone()[0]
    assert abs(size / ROWS - documented) <= documented * 0.05


def test_the_compare_script_refuses_to_run_in_a_product_database():
    result = psql("messenger_test", file=COMPARE_SQL, rows=10)
    assert result.returncode != 0
    assert "run partition_compare.sql in a scratch database" in result.stderr
    with connect("messenger_test") as conn:
        assert conn.execute("SELECT to_regclass('users_plain')").fetchone()[0] is None


# --------------------------------------------------------------------------- the other guides


def test_the_slot_expression_of_the_sharding_guide_is_the_routers_slot(scratch):
    block = next(b for b in sql_blocks(ROOT / "docs" / "SHARDING_GUIDE.md") if "AS slot" in b)
    ids = [uuid.uuid4() for _ in range(5)]
    with connect(scratch) as conn:
        conn.execute("DELETE FROM users")
        for user_id in ids:
            conn.execute(
                "INSERT INTO users (id, name, email, created_at, updated_at)"
                " VALUES (%s, 'S', %s, now(), now())",
                [user_id, f"{user_id}@example.com"],
            )
        rows = conn.execute(block).fetchall()
        conn.execute("DELETE FROM users")
    assert len(rows) == len(ids)
    for user_id, slot in rows:
        assert slot == slot_for_key(str(user_id))
    # Upper-case input routes like lower-case: uuid::text is the canonical key.
    assert slot_for_key(str(ids[0])) == slot_for_key(str(uuid.UUID(str(ids[0]).upper())))


def test_adding_a_column_with_a_database_default_rewrites_nothing(scratch, django_db_blocker):
    """docs/MIGRATIONS.md: the statement Django generates for `db_default` is catalog-only
    and keeps old inserts working; a plain `default` is dropped after the column is added."""
    from django.db import connections, models

    from users.models import User

    def generated(**options) -> list[str]:
        field = models.TextField(blank=True, **options)
        field.set_attributes_from_name("bio")
        field.model = User
        with django_db_blocker.unblock():
            with connections["shard_0"].schema_editor(collect_sql=True, atomic=False) as editor:
                editor.add_field(User, field)
            connections["shard_0"].close()
        return [sql.rstrip(";") for sql in editor.collected_sql]

    (statement,) = generated(db_default="")
    assert statement in (ROOT / "docs" / "MIGRATIONS.md").read_text()
    assert generated(default="")[1] == 'ALTER TABLE "users" ALTER COLUMN "bio" DROP DEFAULT'
    with connect(scratch) as conn:
        before = conn.execute("SELECT pg_relation_filenode('users')").fetchone()[0]
        conn.execute(statement)
        after = conn.execute("SELECT pg_relation_filenode('users')").fetchone()[0]
        conn.execute(
            "INSERT INTO users (id, name, email, created_at, updated_at)"
            " VALUES (%s, 'Old code', 'old@example.com', now(), now())",
            [uuid.uuid4()],
        )
        bio = conn.execute("SELECT bio FROM users WHERE email = 'old@example.com'").fetchone()
        conn.execute("DELETE FROM users")
        conn.execute('ALTER TABLE users DROP COLUMN "bio"')
    assert before == after
    assert bio == ("",)

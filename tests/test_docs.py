"""README.md and docs/*.md name only things that exist.

Every `make` target, endpoint, environment variable or setting, file path, management
command, launcher sub-command, load-test scenario and Markdown link named in the docs is
checked against the Makefile (and the fragments it includes), the URL conf, the source and
the tree. Fast and offline: no database, no network."""

import ast
import contextlib
import io
import re
import uuid
from functools import cache
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The guides the documentation issue asks for; some are written with other work items.
REQUIRED_DOCS = [
    "INDEX.md",
    "ARCHITECTURE.md",
    "SHARDING_GUIDE.md",
    "MIGRATIONS.md",
    "FOREIGN_KEYS.md",
    "DATABASE_SCALING.md",
    "PARTITIONING_GUIDE.md",
    "PERFORMANCE_TUNING.md",
    "BENCHMARKS.md",
    "LOADTEST_INSTRUCTIONS.md",
]
# Folders that exist only at run time (made by `make up`, `make dev`, collectstatic, the load
# tests).
RUNTIME_PREFIXES = ("var/cluster", "var/log", "var/run", "var/static", "loadtest/results", ".venv/")
MIME_PREFIXES = ("application/", "text/", "image/", "multipart/")
PROJECT_EXTENSIONS = ("py", "md", "yml", "yaml", "sql", "sh", "mk", "toml", "lock", "tmpl")
# Upper-case words in code spans that are not variable names.
NOT_VARIABLES = {
    # HTTP
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "HTTP", "JSON", "URL", "API",
    # SQL
    "SELECT", "INSERT", "UPDATE", "COPY", "TRUNCATE", "VACUUM", "ANALYZE", "DETACH", "ATTACH",
    "PARTITION", "RANGE", "HASH", "LIST", "UNIQUE", "NULL", "CASCADE", "EXPLAIN", "BUFFERS",
    "COMMIT", "ROLLBACK", "BEGIN", "LIMIT", "OFFSET", "DEFAULT", "CONCURRENTLY", "INDEX",
    "CREATE", "DROP", "ALTER", "TABLE", "COLUMN", "DATABASE", "TEMPLATE", "NOT", "VALID",
    "REFERENCES", "CHECK", "WHERE", "ORDER", "BY", "DESC", "AND", "OR", "IN", "ON", "AS",
    "FOR", "EACH", "STATEMENT", "ROW", "TRIGGER", "FUNCTION", "SET", "LOCAL", "SHOW",
    "FOREIGN", "KEY", "PRIMARY", "MD5", "UUID", "WAL", "LSN", "UTC", "CPU", "TCP",
    "VALIDATE", "CONSTRAINT", "RETURNING", "CONFLICT", "NOTHING", "ACCESS", "EXCLUSIVE",
    "LOCK", "ON_ERROR_STOP",
}  # fmt: skip


# --------------------------------------------------------------------------- the documents


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


FENCE = re.compile(r"^[ \t]*(```|~~~)([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


@cache
def parsed(path: Path) -> tuple[list[tuple[str, str]], list[str], str]:
    """(fenced blocks as (info, body), inline code spans, prose without any code)."""
    text = path.read_text()
    blocks = [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text)]
    rest = FENCE.sub("\n", text)
    spans = [m.group(2).strip() for m in INLINE.finditer(rest)]
    prose = INLINE.sub(" ", rest)
    return blocks, spans, prose


def code_texts(path: Path) -> list[str]:
    """Every piece of code in a document: fenced blocks (not diagrams) and inline spans."""
    blocks, spans, _ = parsed(path)
    return [body for info, body in blocks if info != "mermaid"] + spans


def all_mentions(extract) -> list[tuple[str, str]]:
    """[(document, mention)] over every document."""
    return [(_rel(p), m) for p in documents() for m in extract(p)]


# --------------------------------------------------------------------------- the project


@cache
def make_targets() -> set[str]:
    """Targets of the Makefile and of every fragment it includes (recursively)."""
    targets: set[str] = set()
    todo, seen = [ROOT / "Makefile"], set()
    while todo:
        makefile = todo.pop()
        if makefile in seen or not makefile.exists():
            continue
        seen.add(makefile)
        text = makefile.read_text()
        for line in text.splitlines():
            if m := re.match(r"^-?include\s+(.+)$", line):
                for name in m.group(1).split():
                    todo += sorted(ROOT.glob(name))
            elif m := re.match(
                r"^([A-Za-z0-9_.%/-]+(?:[ \t]+[A-Za-z0-9_.%/-]+)*)[ \t]*:(?!=)", line
            ):
                targets.update(t for t in m.group(1).split() if not t.startswith("."))
    return targets


@cache
def source_files() -> list[Path]:
    """Where variable names may be defined or read."""
    files = [ROOT / "manage.py", ROOT / "Makefile", ROOT / "docker-compose.yml"]
    files += [ROOT / "Dockerfile", ROOT / "tests" / "conftest.py"]
    for folder in ("messenger", "shards", "users", "database", "loadtest", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if (
                path.suffix in (".py", ".mk", ".sh", ".sql", ".tmpl")
                and "results" not in path.parts
            ):
                files.append(path)
    return [f for f in files if f.is_file()]


@cache
def source_text() -> str:
    return "\n".join(f.read_text(errors="replace") for f in source_files())


def variable_exists(name: str) -> bool:
    """A name read from the environment, a make variable, or a module-level setting or
    constant of the project. `SHARD_<i>_URL` stands for SHARD_0_URL, SHARD_1_URL, ..."""
    parts = re.split(r"<[^>]+>", name)
    if len(parts) > 1:
        hole = r"(?:\{[^}]*\}|\$\{?\w+\}?|\$\(\w+\)|\d+)"
        pattern = hole.join(re.escape(p) for p in parts)
        return re.search(rf"(?<![A-Z0-9_]){pattern}(?![A-Z0-9_])", source_text()) is not None
    if re.search(r"_\d+_", name) and variable_exists(re.sub(r"_\d+_", "_<i>_", name)):
        return True  # SHARD_3_URL is an instance of SHARD_<i>_URL
    quoted = rf"""["']{name}["']"""
    make_or_shell = rf"\$[({{]{name}\b|\${name}\b|\$\(or \$\({name}\)"
    assigned = rf"(?m)^(?:export\s+)?{name}\s*(?:[:?]?=|:\s)"
    return any(re.search(p, source_text()) for p in (quoted, make_or_shell, assigned))


@cache
def launcher_commands() -> set[str]:
    text = (ROOT / "database" / "cluster.py").read_text()
    return set(re.findall(r"add_parser\(\s*\"([\w-]+)\"", text))


@cache
def loadtest_scenarios() -> set[str]:
    from loadtest.profiles import PROFILES

    return set(PROFILES)


@cache
def tracked_basenames() -> set[str]:
    skip = {".git", ".venv", "var", "__pycache__", "node_modules", ".ruff_cache"}
    names = set()
    for path in ROOT.rglob("*"):
        if not skip.intersection(path.relative_to(ROOT).parts):
            names.add(path.name)
    return names


# --------------------------------------------------------------------------- extractors


def make_mentions(path: Path) -> list[str]:
    """`make a b VAR=1` names the targets a and b."""
    found = []
    for code in code_texts(path):
        for m in re.finditer(r"(?<![\w$(/.-])make\b([^\n#;&|)]*)", code):
            for token in m.group(1).split():
                if token.startswith("-"):
                    continue
                if not re.fullmatch(r"[a-z][a-z0-9_.-]*", token):
                    break
                found.append(token)
    return found


ENDPOINT = re.compile(r"(?<![\w./-])/(?:api|health|admin)(?:/[^\s`'\")\]<>?#,|*]*)?")


def endpoint_mentions(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    for m in ENDPOINT.finditer(text):
        endpoint = m.group(0).rstrip(".,:;")
        # A placeholder that continues past the match (`/api/v1/users/<id>`) is an id.
        tail = text[m.end() : m.end() + 4]
        if tail.startswith("<id>"):
            endpoint += "<id>"
        found.append(endpoint)
    return found


def example_path(endpoint: str) -> str:
    return re.sub(r":id\b|<id>|\{id\}|<pk>|\{pk\}", str(uuid.uuid4()), endpoint)


VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*(?:<[a-z]+>[A-Z0-9_]*)*")


def variable_mentions(path: Path) -> list[str]:
    found = []
    blocks, spans, _ = parsed(path)
    for span in spans:
        tokens = re.split(r"[\s,]+", span)
        for token in tokens:
            # In a span of several words (`SET TIME ZONE`, `make seed COUNT=N`) only
            # assignments name variables.
            if len(tokens) > 1 and "=" not in token:
                continue
            name = token.split("=", 1)[0].lstrip("$").strip("()[]{}")
            if VARIABLE.fullmatch(name) and len(name) > 1:
                found.append(name)
    for info, body in blocks:
        if info in ("mermaid", "text", "json", "sql"):
            continue
        # Shell variables an example defines and uses itself are not settings.
        local = {
            name
            for name in re.findall(r"(?m)^\s*([A-Z][A-Z0-9_]*)=\$\(", body)
            if f"${name}" in body
        }
        for name in re.findall(r"(?<![\w$])([A-Z][A-Z0-9_]*(?:<[a-z]+>[A-Z0-9_]*)*)=", body):
            if name not in local:
                found.append(name)
    return [n for n in found if n not in NOT_VARIABLES]


PATH = re.compile(
    r"(?<![\w./:@$~-])"
    r"((?:\.?[\w*<>-]+/)+[\w.*<>-]*|[\w-]+\.(?:" + "|".join(PROJECT_EXTENSIONS) + r"))"
    r"(?![\w/(])"
)


def _paths_in(code: str) -> list[str]:
    code = re.sub(r"\w+://\S+", " ", code)  # URLs are not files of the tree
    return [
        token
        for token in (m.group(1) for m in PATH.finditer(code))
        if not token.startswith(MIME_PREFIXES) and not token.endswith(".")
    ]


def path_mentions(path: Path) -> list[str]:
    blocks, spans, _ = parsed(path)
    found = []
    for info, body in blocks:
        if info == "mermaid":
            continue
        if info in ("", "text"):
            # A tree or a diagram: its descriptions are prose, so only a line's first word
            # (unindented) and file names with a project extension are paths.
            for line in body.splitlines():
                words = line.split()
                found += [
                    t
                    for t in _paths_in(line)
                    if (words and t == words[0] and not line[:1].isspace())
                    or ("/" not in t and "." in t)
                ]
        else:
            found += _paths_in(body)
    for span in spans:
        found += _paths_in(span)
    return found


def path_exists(token: str) -> bool:
    if token.startswith(RUNTIME_PREFIXES):
        return True
    if "/" not in token:
        return token in tracked_basenames()
    pattern = re.sub(r"<[^>]+>", "*", token.rstrip("/"))
    return any(ROOT.glob(pattern)) if "*" in pattern else (ROOT / pattern).exists()


def manage_mentions(path: Path) -> list[str]:
    found = []
    for code in code_texts(path):
        found += re.findall(r"(?:python3?\s+|\./)manage\.py\s+([a-z_]+)", code)
        found += re.findall(r"\$\(MANAGE\)\s+([a-z_]+)", code)
    return found


def launcher_mentions(path: Path) -> list[str]:
    return [m for code in code_texts(path) for m in re.findall(r"cluster\.py\s+([a-z]+)", code)]


def scenario_mentions(path: Path) -> list[str]:
    found = []
    for code in code_texts(path):
        found += [m for m in re.findall(r"loadtest/run\.py\s+([a-z0-9_-]+)", code)]
    return found


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("\n", path.read_text())
    return {slug(h) for h in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*$", text)}


def link_mentions(path: Path) -> list[str]:
    _, _, prose = parsed(path)
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:", t)]


# --------------------------------------------------------------------------- the tests


def test_every_guide_of_the_documentation_issue_exists():
    missing = [name for name in REQUIRED_DOCS if not (DOCS / name).exists()]
    assert not missing, f"docs/ lacks {missing}"


def test_the_index_links_every_guide():
    index = (DOCS / "INDEX.md").read_text()
    for name in REQUIRED_DOCS[1:]:
        assert f"({name})" in index or f"({name}#" in index, f"INDEX.md does not link {name}"


def test_every_make_target_named_is_defined():
    mentions = all_mentions(make_mentions)
    assert mentions, "the extractor found no make targets: it is broken"
    unknown = [(doc, t) for doc, t in mentions if t not in make_targets()]
    assert not unknown, f"make targets not defined in Makefile or its fragments: {unknown}"


def test_every_endpoint_named_resolves():
    mentions = all_mentions(endpoint_mentions)
    assert any(e.startswith("/api/v1/users") for _, e in mentions)
    unresolved = []
    for doc, endpoint in mentions:
        try:
            resolve(example_path(endpoint))
        except Resolver404:
            unresolved.append((doc, endpoint))
    assert not unresolved, f"endpoints the URL conf does not know: {unresolved}"


def test_every_variable_named_is_read_or_defined_by_the_code():
    mentions = all_mentions(variable_mentions)
    assert any(name == "SHARDING_COUNT" for _, name in mentions)
    unknown = sorted({(doc, n) for doc, n in mentions if not variable_exists(n)})
    assert not unknown, f"variables no code reads or defines: {unknown}"


def test_every_file_path_named_exists():
    mentions = all_mentions(path_mentions)
    assert any(p == "messenger/settings.py" for _, p in mentions)
    missing = sorted({(doc, p) for doc, p in mentions if not path_exists(p)})
    assert not missing, f"paths that are not in the tree: {missing}"


def test_every_management_command_named_exists():
    commands = get_commands()
    unknown = [(doc, c) for doc, c in all_mentions(manage_mentions) if c not in commands]
    assert not unknown, f"management commands that do not exist: {unknown}"


def test_every_launcher_command_named_exists():
    unknown = [
        (doc, c) for doc, c in all_mentions(launcher_mentions) if c not in launcher_commands()
    ]
    assert not unknown, f"database/cluster.py has no such command: {unknown}"


def test_every_load_test_scenario_named_exists():
    unknown = [
        (doc, s) for doc, s in all_mentions(scenario_mentions) if s not in loadtest_scenarios()
    ]
    assert not unknown, f"loadtest/run.py has no such scenario: {unknown}"


def test_every_relative_link_points_to_a_file_and_heading_that_exist():
    broken = []
    for doc in documents():
        for target in link_mentions(doc):
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            missing_anchor = anchor and linked.suffix == ".md" and anchor not in anchors(linked)
            if not linked.exists() or missing_anchor:
                broken.append((_rel(doc), target))
    assert not broken, f"broken links: {broken}"


# --------------------------------------------------------------------------- shard arithmetic


def shell_snippets() -> list[tuple[str, str, str]]:
    """(document, code, what the text after it says it prints) for every
    `python manage.py shell -v 0 -c "..."` in the docs."""
    found = []
    for doc in documents():
        text = doc.read_text()
        for m in re.finditer(r'manage\.py shell -v 0 -c "([^"]+)"', text):
            printed = re.match(r"\s*(?:```\s*)?prints `([^`]+)`", text[m.end() :])
            found.append((_rel(doc), m.group(1), printed.group(1) if printed else ""))
    return found


def test_every_shell_snippet_runs_and_prints_what_the_docs_say():
    snippets = shell_snippets()
    assert snippets
    for doc, code, printed in snippets:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})  # noqa: S102 - the docs' own pure routing snippets
        if printed:
            assert out.getvalue().strip() == printed, (doc, code)


def test_the_sharding_guide_slot_table_is_the_slot_map():
    from collections import Counter

    from shards.routing import SLOT_COUNT, slot_map

    text = (DOCS / "SHARDING_GUIDE.md").read_text()
    rows = re.findall(r"(?m)^\| (\d+) \| ([\d, ]+|\d+ each) \| (—|\d+) ", text)
    assert len(rows) >= 4
    for count, quotas, moved in rows:
        n = int(count)
        owned = Counter(slot_map(n))
        if quotas.endswith("each"):
            assert set(owned.values()) == {int(quotas.split()[0])}
        else:
            assert [owned[i] for i in range(n)] == [int(q) for q in quotas.split(",")]
        if moved != "—":
            changed = sum(a != b for a, b in zip(slot_map(n - 1), slot_map(n), strict=True))
            assert changed == int(moved) and changed == owned[n - 1]
    assert sum(slot_map(5)[s] == 4 for s in range(SLOT_COUNT)) == 819
    assert "moves only that shard's own 819 slots" in text


def test_the_migration_counts_in_the_migrations_guide_are_those_on_disk():
    from django.db import router
    from django.db.migrations.loader import MigrationLoader

    on_disk = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    text = (DOCS / "MIGRATIONS.md").read_text()
    product = {app for app, _ in on_disk if not app.startswith("sharded_messages")}
    for alias, count in re.findall(r"(?m)^ +(default|shard_\d+): (\d+) applied$", text):
        expected = sum(
            1 for app, _ in on_disk if app in product and router.allow_migrate(alias, app)
        )
        assert int(count) == expected, f"{alias}: the guide says {count}, disk has {expected}"


# --------------------------------------------------------------------------- README tables


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        node = ast.parse(text, mode="eval")
        if isinstance(node.body, ast.BinOp) and isinstance(node.body.op, ast.Mult):
            return _literal(ast.unparse(node.body.left)) * _literal(ast.unparse(node.body.right))
        raise


@cache
def code_defaults() -> dict[str, object]:
    """Defaults of the environment variables whose default is a literal in the code."""
    defaults: dict[str, object] = {}
    settings_py = (ROOT / "messenger" / "settings.py").read_text()
    for name, value in re.findall(r'env\.\w+\(\s*"(\w+)",\s*default=([^)\n]+?)\)', settings_py):
        with contextlib.suppress(ValueError, SyntaxError):
            defaults[name] = _literal(value)
    gunicorn = (ROOT / "messenger" / "gunicorn.conf.py").read_text()
    for name, value in re.findall(
        r"environ\.get\(\s*['\"](\w+)['\"],\s*['\"]([^'\"]+)['\"]", gunicorn
    ):
        defaults.setdefault(name, value)
    cluster = (ROOT / "database" / "cluster.py").read_text()
    for name, value in re.findall(r'_int_env\(env, "(\w+)", (\d+)\)', cluster):
        defaults.setdefault(name, int(value))
    return defaults


def _same(documented: str, actual: object) -> bool:
    if isinstance(actual, bool):
        return documented.lower() == str(actual).lower()
    if isinstance(actual, int | float):
        try:
            return float(documented.replace(",", "")) == float(actual)
        except ValueError:
            return False
    return documented.lower() == str(actual).lower()


def test_the_readme_configuration_defaults_are_the_code_defaults():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"(?m)^\| `([A-Z][A-Z0-9_]*)` \| `([^`]+)` \|", readme)
    assert rows, "the README has no configuration table"
    wrong = [
        (name, documented, code_defaults()[name])
        for name, documented in rows
        if name in code_defaults() and not _same(documented, code_defaults()[name])
    ]
    assert not wrong, f"README defaults that differ from the code: {wrong}"


# Reads of the environment by the product's code: env.<type>("NAME" (django-environ),
# os.environ.get("NAME" / os.environ["NAME"] / os.getenv("NAME". `{...}` in an f-string
# stands for any value, like `<i>` in the README.
ENV_READ = re.compile(
    r"""(?:\benv\.\w+|os\.environ\.get|os\.getenv)\(\s*f?["']([A-Z][A-Za-z0-9_{}]*)["']"""
    r"""|os\.environ\[\s*f?["']([A-Z][A-Za-z0-9_{}]*)["']\]"""
)
ENV_READERS = ("messenger", "shards", "users", "resharding", "apikeys", "scripts")


def env_reads() -> set[str]:
    names = set()
    for folder in ENV_READERS:
        for path in (ROOT / folder).rglob("*.py"):
            for match in ENV_READ.finditer(path.read_text()):
                names.add(re.sub(r"\{[^}]*\}", "<i>", match.group(1) or match.group(2)))
    return names


def test_every_environment_variable_the_code_reads_is_in_the_readme_configuration_table():
    names = env_reads()
    assert {"SECRET_KEY", "SHARD_<i>_URL", "WEB_CONCURRENCY", "HEALTHCHECK_API_KEY"} <= names
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ")[0]
    documented = {
        re.sub(r"<[a-z]+>", "<i>", name) for name in re.findall(r"(?m)^\| `([^`]+)` \|", section)
    }
    assert not names - documented, f"read by the code, not in the table: {names - documented}"


def test_the_readme_pgbouncer_table_matches_the_pgbouncer_template():
    readme = (ROOT / "README.md").read_text()
    ini = (ROOT / "database" / "pgbouncer" / "pgbouncer.ini.tmpl").read_text()
    section = readme.split("### PgBouncer", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"(?m)^\| `([a-z_]+)` \| `([^`]+)` \|", section)
    assert rows
    for name, value in rows:
        assert re.search(rf"(?m)^{name} = {re.escape(value)}$", ini), f"{name} = {value}"


# --------------------------------------------------------------------------- the checker


@pytest.mark.parametrize(
    ("markdown", "targets"),
    [
        ("run `make up` then `make db-shell SHARD=0`", ["up", "db-shell"]),
        ("```bash\nmake down up   # restart\nSHARDING_COUNT=6 make up\n```", ["down", "up", "up"]),
        ("`$(MAKE) venv` and `migrate-make` are not mentions", []),
    ],
)
def test_the_make_extractor_reads_targets_and_skips_variables(tmp_path, markdown, targets):
    doc = tmp_path / "x.md"
    doc.write_text(markdown)
    assert make_mentions(doc) == targets


def test_the_checkers_catch_what_does_not_exist(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "`make no-such-target` `/api/v2/nothing` `NO_SUCH_SETTING` `shards/nothing.py`\n"
        "```bash\nTOKEN=$(curl -s x)\necho $TOKEN\n```\n"
    )
    assert [t for t in make_mentions(doc) if t not in make_targets()] == ["no-such-target"]
    with pytest.raises(Resolver404):
        resolve(endpoint_mentions(doc)[0])
    assert variable_mentions(doc) == ["NO_SUCH_SETTING"]
    assert not variable_exists("NO_SUCH_SETTING")
    assert variable_exists("SHARD_<i>_REPLICA_URL") and variable_exists("PORT")
    assert path_mentions(doc) == ["shards/nothing.py"]
    assert not path_exists("shards/nothing.py") and path_exists("shards/routing.py")


def test_the_decisions_name_every_module_that_still_runs_sql_and_they_are_at_most_four():
    """SQL text (`.execute(`, `RawSQL`, `.raw(`) stays in the modules DECISIONS.md names."""
    root = DOCS.parent
    running = {
        str(path.relative_to(root))
        for folder in ("users", "shards")
        for path in (root / folder).rglob("*.py")
        if "management" not in path.parts
        and re.search(r"\.execute\(|RawSQL|\.raw\(", path.read_text())
    }
    named = set(
        re.findall(r"`((?:users|shards)/[a-z_/]+\.py)`", (DOCS / "DECISIONS.md").read_text())
    )
    assert running <= named, f"SQL outside the decisions: {running - named}"
    assert len(running) <= 4, running

"""The runtime lock holds what the API needs to run and nothing of the development tools;
the development lock adds those on top of it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = ("pytest", "pytest-django", "pytest-timeout", "ruff", "playwright", "locust")
# The benchmark's FastAPI + asyncpg reference server (bench/fastapi_ref.py).
BENCH_PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "asyncpg")


def pins(name: str) -> dict[str, str]:
    """{normalised package name: version} of a lock file's `name==version` lines."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


def test_the_runtime_lock_has_no_development_tool():
    runtime = pins("requirements.lock")
    assert {"django", "djangorestframework", "gunicorn", "gevent", "psycopg"} <= set(runtime)
    assert not set(DEV_TOOLS) & set(runtime)
    assert not set(BENCH_PACKAGES) & set(runtime)


def test_the_dev_lock_is_the_runtime_lock_plus_the_tools():
    text = (ROOT / "requirements-dev.lock").read_text()
    assert "-r requirements.lock" in text.splitlines()
    dev = pins("requirements-dev.lock")
    assert set(DEV_TOOLS) <= set(dev)
    assert set(BENCH_PACKAGES) <= set(dev)
    assert not set(dev) & set(pins("requirements.lock")), "a package pinned in both files"

"""What an operator and a container runtime check: `make health` and scripts/healthcheck.py
fail when the API does not answer or is not ready, and readiness names the control database
when that is the part that is down."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.api_process import BASE_PORT, api_server_with

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_health(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "health", f"PORT={port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def healthcheck(port: int) -> int:
    env = {**os.environ, "PORT": str(port)}
    script = [sys.executable, "scripts/healthcheck.py"]
    return subprocess.run(script, cwd=ROOT, env=env, capture_output=True, timeout=30).returncode


@pytest.fixture(scope="module")
def control_db_down(django_db_setup) -> str:
    """An API server whose control database does not answer (nothing listens on its port)."""
    url = f"postgres://postgres@127.0.0.1:{closed_port()}/control_test"
    with api_server_with(BASE_PORT + 6, DATABASE_URL=url) as base:
        yield base


def test_make_health_and_the_image_health_check_pass_when_the_api_is_ready(api_server):
    port = int(api_server.rsplit(":", 1)[1])
    result = make_health(port)
    assert result.returncode == 0, result.stderr
    assert '"status": "ok"' in result.stdout
    assert healthcheck(port) == 0


def test_make_health_and_the_image_health_check_fail_when_the_api_does_not_answer():
    port = closed_port()
    result = make_health(port)
    assert result.returncode != 0
    assert "Failed to connect" in result.stderr
    assert healthcheck(port) == 1


def test_readiness_names_the_control_database_when_it_is_down(control_db_down):
    ready = requests.get(f"{control_db_down}/health/ready", timeout=10)
    assert ready.status_code == 503
    body = ready.json()
    assert body["failing"] == ["control-db"]
    assert body["control_db_ok"] is False
    assert all(shard["primary_ok"] and shard["replica_ok"] for shard in body["shards"])
    port = int(control_db_down.rsplit(":", 1)[1])
    result = make_health(port)
    assert result.returncode != 0
    assert "control-db" in result.stdout
    assert healthcheck(port) == 1

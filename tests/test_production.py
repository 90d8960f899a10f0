"""Production settings: `check --deploy` passes, and settings with a typo are refused."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNSET = ("DJANGO_ENV", "API_AUTH", "API_KEY_RATE", "REDIS_URL")  # each test says its own


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "api.example.com",
}


def test_check_deploy_passes_in_production_settings_without_a_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_ENV": "prod"}, "DJANGO_ENV must be dev, test or production, not 'prod'"),
        ({**PRODUCTION, "API_AUTH": "on"}, "API_AUTH must be off or required, not 'on'"),
        ({"API_KEY_RATE": "10/s"}, "API_KEY_RATE needs REDIS_URL"),
    ],
)
def test_an_unknown_value_is_refused_at_start(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr

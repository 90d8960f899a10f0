"""A real gunicorn for one test module, with its own environment and port."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.conftest import api_env
from tests.fault_cluster import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
# Test servers of these modules listen on TEST_API_PORT + offset (18080 by default).
BASE_PORT = int(os.environ.get("TEST_API_PORT", "18080"))


@contextlib.contextmanager
def api_server_with(port: int, **env: str) -> Iterator[str]:
    """Run the API on the test databases with `env` on top; yield its base URL once /health
    answers."""
    log = ROOT / "var" / f"test-api-{port}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "messenger/gunicorn.conf.py"],
            cwd=ROOT,
            env={**api_env(port), "WEB_CONCURRENCY": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not answer"
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)

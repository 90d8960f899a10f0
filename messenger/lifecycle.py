"""gunicorn hooks for restarts that keep serving and stops that reset nothing.

Restart (scripts/api.sh restart) is gunicorn's documented zero-downtime path: USR2 makes
the master fork and exec a new master that inherits the listening socket, so there is one
accept queue and it is never closed; the new workers take connections as soon as they are
ready, and only then is the old master stopped (TERM), its workers finishing what they
hold. Nothing here replaces gunicorn's machinery; these hooks add what it lacks:

- readiness: each worker reports, after Django is loaded and the first health refresh is
  done, in `$API_RUN_DIR/api-<master pid>.ready`; the master writes its worker count in
  `api-<master pid>.workers`. api.sh waits for both before it stops the old master.
- a changed environment: a re-exec'd master normally gets the old master's environment;
  api.sh writes the caller's in `$API_RUN_DIR/api.env`, and pre_exec hands it over, so
  `LOG_FORMAT=json make restart` takes effect.
- one control socket per master (`gunicorn-<pid>.ctl`): gunicorn's default path is shared
  by every instance of a user, and stopping one removes it for all.
- a clean stop: before the last master stops, its listeners stop taking new connections
  (messenger.listener) so the queued ones are served instead of reset.
"""

import os
from pathlib import Path
from typing import Any

from messenger.listener import refuse_new_connections

ROOT = Path(__file__).resolve().parent.parent


def run_dir() -> Path:
    return Path(os.environ.get("API_RUN_DIR") or ROOT / "var" / "run")


def _readiness_enabled() -> bool:
    return bool(os.environ.get("API_RUN_DIR"))  # only api.sh waits for these files


def on_starting(server: Any) -> None:
    """In the master, after daemonizing: its own control socket, and a clean stop."""
    run_dir().mkdir(parents=True, exist_ok=True)
    server.cfg.set("control_socket", str(run_dir() / f"gunicorn-{os.getpid()}.ctl"))
    stop = server.stop

    def stop_without_resets(graceful: bool = True) -> None:
        # reexec_pid: a new master shares the socket (restart): it must keep taking
        # connections. master_pid: this master is the new one and its parent still serves.
        if graceful and server.reexec_pid == 0 and server.master_pid == 0:
            refuse_new_connections(server.LISTENERS)
        stop(graceful)

    # Arbiter.stop is the only place every graceful stop goes through, and gunicorn has no
    # hook before it: wrap it on this arbiter instance.
    server.stop = stop_without_resets


def when_ready(server: Any) -> None:
    if _readiness_enabled():
        path = run_dir() / f"api-{os.getpid()}.workers"
        path.write_text(f"{server.num_workers}\n")
        (run_dir() / f"api-{os.getpid()}.ready").unlink(missing_ok=True)


def worker_ready(worker: Any) -> None:
    """Call at the end of post_worker_init: this worker now serves at full speed."""
    if _readiness_enabled():
        # O_APPEND: one short write per worker, never interleaved with another's.
        with open(run_dir() / f"api-{worker.ppid}.ready", "a") as ready:
            ready.write(f"{worker.pid}\n")


def on_exit(server: Any) -> None:
    for name in (f"api-{server.pid}.workers", f"api-{server.pid}.ready"):
        (run_dir() / name).unlink(missing_ok=True)


def pre_exec(server: Any) -> None:
    """In the forked child about to exec the new master (USR2): use the caller's environment."""
    env_file = run_dir() / "api.env"
    if not env_file.exists():
        return
    entries = env_file.read_bytes().split(b"\0")
    env_file.unlink()
    environ = dict(
        entry.decode(errors="surrogateescape").split("=", 1) for entry in entries if b"=" in entry
    )
    server.cfg.env_orig.clear()
    server.cfg.env_orig.update(environ)

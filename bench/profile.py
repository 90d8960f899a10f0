"""Profile one worker of the bench server under wrk load with py-spy; summarise where the
CPU time goes.

    .venv/bin/pip install py-spy                  # a profiling tool, not a project dependency
    .venv/bin/python bench/profile.py get_ours get_ceiling post_ours post_bare list_ours

One gevent worker (WEB_CONCURRENCY=1) so a single process holds all the work; py-spy
samples it with `--gil` (only stacks that hold the GIL, i.e. Python actually running, not
the hub waiting in epoll). For each target the raw collapsed stacks are written to
var/bench/profile-<target>.txt (open them with any flame graph tool) and a summary is
printed: the share of samples by layer (the file the sampled frame runs in) and the
functions with the largest inclusive share.
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run  # noqa: E402 - sets up Django

RATE = 250  # samples per second

# Which layer a frame belongs to, by the file it runs in: first match wins.
LAYERS = [
    ("psycopg (driver, pool)", ("psycopg",)),
    ("Django DB layer (connections, cursors, ORM, transactions)", ("django/db/",)),
    ("DRF (views, request, serializers, renderers)", ("rest_framework/",)),
    ("Django request/response (handlers, middleware, urls, http)", ("django/",)),
    ("gunicorn + gevent (HTTP parsing, sockets, greenlets)", ("gunicorn/", "gevent/")),
    ("our code: users/", ("users/",)),
    ("our code: shards/ (routing, health, access, scatter)", ("shards/",)),
    ("our code: messenger/", ("messenger/",)),
    ("bench views", ("bench/",)),
]


def _file_of(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py)".
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else frame


def layer_of(frame: str) -> str:
    path = _file_of(frame)
    for name, needles in LAYERS:
        if any(needle in path for needle in needles):
            return name
    return "Python standard library and other"


def summarise(raw: Path, top: int = 25, requests: float | None = None) -> str:
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    total = sum(count for _, count in stacks) or 1
    by_layer: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        # Attribute a sample to the innermost frame that is not the standard library, so
        # time inside e.g. uuid or json is charged to the layer that called it.
        owner = next(
            (layer_of(f) for f in reversed(frames) if "python3" not in _file_of(f)),
            layer_of(frames[-1]),
        )
        by_layer[owner] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    if requests:
        # Each sample stands for 1/RATE s of the worker running Python.
        lines[0] += f", about {1000 * total / RATE / requests:.2f} ms of worker CPU per request"
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_layer.most_common()]
    lines.append("  inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def profile(server: run.Server, target: dict, args: argparse.Namespace) -> str:
    [worker] = server.worker_pids()
    raw = run.OUT / f"profile-{target['key']}.txt"
    cpu_before = server.cpu_seconds()
    load = subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{args.connections}",
            f"-d{args.seconds + 3}s",
            "-s",
            str(run.LUA / target["script"]),
            f"http://127.0.0.1:{server.port}{target.get('path', '/')}",
        ],
        cwd=run.ROOT,
        env={**os.environ, **target.get("env", {}), "BENCH_NONCE": uuid.uuid4().hex[:12]},
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    subprocess.run(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(worker),
            "--duration",
            str(args.seconds),
            "--rate",
            str(RATE),
            "--gil",
            "--nolineno",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        check=True,
        capture_output=True,
    )
    out, _ = load.communicate()
    cpu = server.cpu_seconds() - cpu_before
    line = next((x for x in out.splitlines() if x.startswith("Requests/sec")), "")
    rps = float(line.split()[-1]) if line else 0.0
    served = next((int(x.split()[0]) for x in out.splitlines() if " requests in " in x), 0)
    summary = summarise(raw, requests=rps * args.seconds)
    return (
        f"== {target['key']}: {target['label']} ({rps:.0f} req/s, 1 worker, sampled;"
        f" worker CPU {1000 * cpu / max(served, 1):.2f} ms/request measured)\n{summary}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="Keys of bench/run.py's main targets.")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "8092")))
    parser.add_argument("--settings", default="bench.settings")
    args = parser.parse_args()
    ids = run.sample_ids(2_000)
    targets = {t["key"]: t for t in run.main_targets(ids)}
    unknown = set(args.targets) - set(targets)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: {sorted(targets)}")
    try:
        with run.Server(args.port, workers=1, settings=args.settings) as server:
            for key in args.targets:
                print(profile(server, targets[key], args), flush=True)
    finally:
        run.delete_bench_users()


if __name__ == "__main__":
    main()

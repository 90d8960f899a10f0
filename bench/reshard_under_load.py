"""Measure an online move under load: API clients run creates, reads with their tokens,
renames, deletes and list pages against the running API while `manage.py reshard --to N
--yes` runs; then every acknowledged write is checked on the primaries.

    SHARDING_COUNT=6 .venv/bin/python bench/reshard_under_load.py --to 6 [--seconds 60]

Prints the move's own log, the requests by outcome, the p99 latency before and during the
move, the longest write during it (what clients feel of the write pause), and any lost or
resurrected write or stale read. The figures in docs/DATABASE_SCALING.md come from it."""

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.fault_workload import run_workload, verify_writes  # noqa: E402


def p99_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", type=int, required=True, help="shards that own slots after")
    parser.add_argument("--seconds", type=float, default=60, help="length of the load")
    parser.add_argument("--start-after", type=float, default=4, help="load alone first")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8080')}")
    args = parser.parse_args()
    move: dict = {}

    def run_move() -> None:
        move["start"] = time.monotonic()
        done = subprocess.run(
            [sys.executable, "manage.py", "reshard", "--to", str(args.to), "--yes"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        move["end"], move["rc"], move["log"] = time.monotonic(), done.returncode, done.stdout
        move["log"] += done.stderr

    report = run_workload(
        args.url, args.seconds, clients=args.clients, shards=args.to,
        events=[(args.start_after, run_move)],
    )  # fmt: skip
    print(move["log"].rstrip())
    print(f"reshard exited {move['rc']} after {move['end'] - move['start']:.1f} s")
    base_port = int(os.environ.get("PRIMARY_BASE_PORT", "5440"))

    def primary(shard: int) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=base_port + shard, user="postgres",
                               dbname=os.environ.get("SHARD_DB_NAME", "messenger"),
                               autocommit=True)  # fmt: skip

    verify_writes(report, primary)  # by slot_map(N): the map in force after the move
    outcomes = collections.Counter(f"{s.kind} {s.status}" for s in report.samples)
    print("requests:", ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    before = [s.seconds for s in report.samples if s.at < move["start"]]
    during = [s for s in report.samples if move["start"] <= s.at <= move["end"]]
    writes = [s.seconds for s in during if s.kind in ("create", "update", "delete")]
    print(f"p99 before the move {p99_ms(before):.1f} ms ({len(before)} requests),"
          f" during it {p99_ms([s.seconds for s in during]):.1f} ms ({len(during)} requests);"
          f" longest write during it {max(writes, default=0) * 1000:.0f} ms")  # fmt: skip
    print(f"lost writes {len(report.lost)}, resurrected deletes {len(report.resurrected)},"
          f" problems {len(report.problems)}: {report.problems[:5]}")  # fmt: skip
    failed = move["rc"] or report.lost or report.resurrected or report.problems
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Two builds side by side: same database, same machine, one run.

    .venv/bin/python bench/compare_builds.py --ref 2afc38c [--new 4f3c022]

The earlier commit (and, with --new, a later one instead of this checkout) is exported
(`git archive`) into var/bench/ref-<commit>/ and served by the same virtualenv with the same
gunicorn config on a port of its own, next to the other build's server. Each round runs
every target against both servers, one after the other, in an order that alternates
between rounds, so load from elsewhere on a shared machine falls on both alike. Printed per
target: req/s and worker CPU per request of each build and the ratio (new / ref: above 1 is
faster for req/s, below 1 is cheaper for CPU), and written to docs/BENCHMARKS.md as its
last section. Both servers read the dev database
(`make up migrate-up`); seeded users are added if too few, and the users the POST target
creates are deleted afterwards.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (  # noqa: E402 - bench.run sets Django up first
    OUT,
    PAGE,
    ROOT,
    Server,
    delete_bench_users,
    run_target,
    sample_ids,
    seed,
    seeded_users,
    wait_for_replicas,
    write_side_by_side,
    wrk,
)


def export(commit: str) -> Path:
    """The tree of `commit` in var/bench/ref-<sha>/ (kept between runs)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    target = OUT / f"ref-{sha}"
    if not (target / "manage.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def targets(ids: dict[str, Path], only: list[str] | None = None) -> list[dict]:
    every = [
        {"key": "get", "script": "get_ids.lua", "env": {"BENCH_IDS": str(ids["all"])}},
        {"key": "post", "script": "post_users.lua", "env": {"BENCH_PATH": "/api/v1/users/"}},
        {"key": "list", "script": "fixed.lua", "path": f"/api/v1/users/?limit={PAGE}"},
    ]
    return [target for target in every if not only or target["key"] in only]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="The earlier commit to compare with.")
    parser.add_argument("--new", help="A later commit to serve instead of this checkout.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="Seconds per run.")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-users", type=int, default=100_000)
    parser.add_argument("--ref-port", type=int, default=18095)
    parser.add_argument("--port", type=int, default=18096)
    parser.add_argument(
        "--only", nargs="+", choices=("get", "post", "list"),
        help="Run these operations only (a trial: docs/BENCHMARKS.md is left as it is).",
    )  # fmt: skip
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ref_root = export(args.ref)
    seeded = seeded_users()
    if seeded < args.min_users:
        seed(args.min_users - seeded)
    ids = sample_ids(2_000)
    runs: dict[tuple[str, str], list[dict]] = {}
    with (
        Server(args.ref_port, settings="messenger.settings", root=ref_root) as ref,
        Server(
            args.port, settings="messenger.settings", root=export(args.new) if args.new else ROOT
        ) as new,
    ):
        builds = {"ref": ref, "new": new}
        for target in targets(ids, args.only):  # warm both up
            for server in builds.values():
                wrk(server.port, target["script"], target.get("path", "/"), connections=8,
                    threads=1, seconds=2, env=target.get("env"))  # fmt: skip
        for round_no in range(args.rounds):
            order = list(builds.items()) if round_no % 2 == 0 else list(builds.items())[::-1]
            for target in targets(ids, args.only):
                for name, server in order:
                    figures = run_target(server, target, args)
                    runs.setdefault((target["key"], name), []).append(figures)
                    print(
                        f"round {round_no + 1} {target['key']:<5} {name}: {figures['rps']:7.0f}"
                        f" req/s  {figures['cpu_ms']:.3f} ms CPU/req  errors {figures['errors']}",
                        flush=True,
                    )
    delete_bench_users()
    wait_for_replicas()
    rows = {}
    for key in [target["key"] for target in targets(ids, args.only)]:
        ref_runs, new_runs = runs[(key, "ref")], runs[(key, "new")]
        rows[key] = {
            "ref_rps": statistics.median(r["rps"] for r in ref_runs),
            "new_rps": statistics.median(r["rps"] for r in new_runs),
            "ref_cpu_ms": statistics.median(r["cpu_ms"] for r in ref_runs),
            "new_cpu_ms": statistics.median(r["cpu_ms"] for r in new_runs),
            "errors": sum(r["errors"] for r in ref_runs + new_runs),
        }
    new_name = args.new or "this checkout"
    print(
        f"\nmedians of {args.rounds} rounds, {args.connections} connections,"
        f" ref {args.ref}, new {new_name}"
    )
    print(
        "| operation | ref req/s | new req/s | new/ref"
        " | ref CPU ms/req | new CPU ms/req | new/ref |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, r in rows.items():
        print(
            f"| {key} | {r['ref_rps']:.0f} | {r['new_rps']:.0f} | {r['new_rps'] / r['ref_rps']:.2f}"
            f" | {r['ref_cpu_ms']:.3f} | {r['new_cpu_ms']:.3f}"
            f" | {r['new_cpu_ms'] / r['ref_cpu_ms']:.2f} |"
        )
    command = " ".join(["bench/compare_builds.py", *sys.argv[1:]])
    result = {
        "ref": args.ref,
        "new": new_name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": args.rounds,
        "duration": args.duration,
        "connections": args.connections,
        "rows": rows,
    }
    if args.only:
        return
    (OUT / "compare.json").write_text(json.dumps(result, indent=2))
    write_side_by_side(result)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Run one load-test scenario headless, keep its reports, judge it against its thresholds.

    python loadtest/run.py SCENARIO [--users N] [--run-time S] [--spawn-rate R]
                                    [--processes P] [--pacing S] [--base-url URL]
    python loadtest/run.py --list          the scenarios and their thresholds
    python loadtest/run.py --report        the latest report (opened when a display exists)

Each run writes `loadtest/results/<timestamp>-<scenario>/` (or under $LOADTEST_RESULTS_DIR):
locust's `report.html`, its CSVs (`locust_stats.csv`, `locust_failures.csv`,
`locust_exceptions.csv`, `locust_stats_history.csv`), its log, and `summary.txt` /
`summary.json` with the one-screen summary printed at the end. The exit status is 0 when
every threshold holds, 1 when one fails, 2 when the run could not start.

The target is $BASE_URL, by default http://127.0.0.1:$PORT (PORT defaults to 8080).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.profiles import PROFILES, Profile, Thresholds  # noqa: E402

DEFAULT_RESULTS = ROOT / "loadtest" / "results"
CSV_PREFIX = "locust"
CONSISTENCY = "consistency violation"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Past the planned end, how long locust gets to stop before the run is killed.
GRACE_SECONDS = 90
STOP_TIMEOUT = 10


@dataclass
class EndpointStats:
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float


@dataclass
class Outcome:
    scenario: str
    base_url: str
    users: int
    run_time: int
    processes: int
    pacing: float | None
    results_dir: str
    locust_exit_code: int
    endpoints: list[EndpointStats]
    total: EndpointStats | None
    failures: list[dict]
    consistency_violations: int
    exceptions: int
    full_load_rps: float | None
    peak_connections: int | None
    checks: list[dict] = field(default_factory=list)
    passed: bool = False


# -- command line ---------------------------------------------------------------------------


def parse_seconds(text: str) -> int:
    """'90', '90s', '2m', '1m30s' -> seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    total, number = 0, ""
    for char in text:
        if char.isdigit():
            number += char
        elif char in "hms" and number:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise argparse.ArgumentTypeError(f"not a duration: {text}")
    if number:
        raise argparse.ArgumentTypeError(f"not a duration: {text}")
    return total


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", choices=sorted(PROFILES))
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--report", action="store_true", help="show the latest report")
    parser.add_argument("--users", type=int, help="peak users (default: the scenario's)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second")
    parser.add_argument("--run-time", type=parse_seconds, help="seconds, ramp included")
    parser.add_argument("--processes", type=int, help="locust worker processes")
    parser.add_argument("--pacing", type=float, help="paced scenarios: seconds per user task")
    parser.add_argument("--base-url", default=os.environ.get("BASE_URL") or None)
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(os.environ.get("LOADTEST_RESULTS_DIR") or DEFAULT_RESULTS),
        help="where run folders go (default loadtest/results)",
    )
    args = parser.parse_args(argv)
    if not (args.list or args.report or args.scenario):
        parser.error("give a scenario, --list or --report")
    return args


def effective_profile(profile: Profile, args: argparse.Namespace) -> Profile:
    """The scenario's profile with the command line's overrides applied."""
    users = args.users or profile.users
    spawn_rate = args.spawn_rate or profile.spawn_rate
    processes = args.processes or profile.processes
    if args.users and not args.spawn_rate:
        # Keep the ramp about as long as the scenario's own (at most 100 users/s).
        spawn_rate = min(max(users / max(profile.ramp_seconds, 1), 1), 100)
    if args.users and not args.processes and users > 2000:
        processes = max(profile.processes, 2)  # one greenlet loop tops out near 5k users
    return Profile(
        name=profile.name,
        module=profile.module,
        summary=profile.summary,
        users=users,
        spawn_rate=spawn_rate,
        run_time=args.run_time or profile.run_time,
        processes=processes,
        shape=profile.shape,
        pacing=args.pacing or profile.pacing,
        thresholds=profile.thresholds,
    )


# -- preflight ------------------------------------------------------------------------------


def check_target(base_url: str) -> str | None:
    """Why the API at base_url cannot be load-tested, or None."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
            if response.status == 200:
                return None
            return f"{base_url}/health answered {response.status}"
    except OSError as exc:
        return f"{base_url}/health did not answer ({exc})"


def raise_file_limit(users: int, processes: int) -> list[str]:
    """Every user holds a socket: lift our soft limit to the hard one (locust inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = users // max(processes, 1) + 256
    if hard < need:
        return [f"open-file limit {hard} < {need} needed per locust process: raise `ulimit -Hn`"]
    return []


def server_file_limit_warning(base_url: str, users: int) -> list[str]:
    """The local API (scripts/api.sh) needs a socket per user too: check its limit."""
    pid_file = ROOT / "var" / "run" / "api.pid"
    parts = urlsplit(base_url)
    if parts.hostname not in LOCAL_HOSTS or not pid_file.exists():
        return []
    if parts.port != int(os.environ.get("PORT", "8080")):
        return []
    try:
        limits = Path(f"/proc/{pid_file.read_text().strip()}/limits").read_text()
    except OSError:
        return []
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            soft = int(line.split()[3])
            if soft < users + 256:
                return [f"API server's open-file limit is {soft}: restart it with scripts/api.sh"]
    return []


# -- watching the run -----------------------------------------------------------------------


class ConnectionMonitor(threading.Thread):
    """Samples the number of established TCP connections to the target port (client side)
    from /proc/net/tcp*, to show that the users really hold their connections."""

    def __init__(self, port: int, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.port_hex = f"{port:04X}"
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def count(self) -> int:
        total = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as lines:
                    next(lines)
                    for line in lines:
                        fields = line.split(None, 4)
                        # fields: sl, local, remote, state; 01 = ESTABLISHED
                        if fields[3] == "01" and fields[2].endswith(":" + self.port_hex):
                            total += 1
            except OSError:
                continue
        return total

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, self.count())

    def stop(self) -> None:
        self._stop_event.set()


def last_history_line(path: Path) -> dict | None:
    try:
        with path.open() as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    except OSError:
        return None
    return rows[-1] if rows else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def live_line(row: dict, elapsed: float, run_time: int) -> str:
    """One line of live stats from locust's latest history row (percentiles since start)."""
    requests, failures = int(row["Total Request Count"]), int(row["Total Failure Count"])
    share = 100.0 * failures / requests if requests else 0.0
    left = max(run_time - elapsed, 0)
    return (
        f"  {elapsed:5.0f} s  users {row['User Count']:>6}  req/s {_float(row['Requests/s']):7.1f}"
        f"  p50 {row['50%']:>5} ms  p95 {row['95%']:>5} ms"
        f"  failures {failures} ({share:.2f}%)  {left:.0f} s left"
    )


def run_locust(
    cmd: list[str], out_dir: Path, deadline: float, env: dict[str, str], run_time: int
) -> int:
    """Run locust to completion (or kill it at the deadline), showing its live stats: on a
    terminal one line redrawn every 2 s, otherwise (CI, a log) a line every 15 s.
    Ctrl-C or SIGTERM stops locust, which still writes its reports."""
    signal.signal(signal.SIGTERM, _interrupt)
    log_path = out_dir / "locust.log"
    tty = sys.stdout.isatty()
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while True:
                try:
                    return process.wait(timeout=2 if tty else 15)
                except subprocess.TimeoutExpired:
                    pass
                elapsed = time.monotonic() - started
                if time.monotonic() > deadline:
                    print(f"\n  locust still running after {elapsed:.0f} s: killing it")
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    return -9
                row = last_history_line(out_dir / f"{CSV_PREFIX}_stats_history.csv")
                if row:
                    line = live_line(row, elapsed, run_time)
                    print(f"\r\x1b[K{line}" if tty else line, end="" if tty else "\n", flush=True)
        except KeyboardInterrupt:
            os.killpg(process.pid, signal.SIGINT)  # locust stops and still writes its reports
            return process.wait()
        finally:
            if tty:
                print(flush=True)


# -- reading locust's files -----------------------------------------------------------------


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else 0.0
    except ValueError:
        return 0.0


def read_stats(out_dir: Path) -> tuple[list[EndpointStats], EndpointStats | None]:
    path = out_dir / f"{CSV_PREFIX}_stats.csv"
    endpoints, total = [], None
    if not path.exists():
        return endpoints, total
    with path.open() as handle:
        for row in csv.DictReader(handle):
            stats = EndpointStats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=_float(row["Requests/s"]),
                p50=_float(row["50%"]),
                p95=_float(row["95%"]),
                p99=_float(row["99%"]),
                max=_float(row["Max Response Time"]),
            )
            if row["Name"] == "Aggregated":
                total = stats
            else:
                endpoints.append(stats)
    return endpoints, total


def read_failures(out_dir: Path) -> list[dict]:
    path = out_dir / f"{CSV_PREFIX}_failures.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        rows = [
            {
                "method": row["Method"],
                "name": row["Name"],
                "error": row["Error"],
                "occurrences": int(row["Occurrences"]),
            }
            for row in csv.DictReader(handle)
        ]
    return sorted(rows, key=lambda row: -row["occurrences"])


def read_exceptions(out_dir: Path) -> int:
    path = out_dir / f"{CSV_PREFIX}_exceptions.csv"
    if not path.exists():
        return 0
    with path.open() as handle:
        return sum(int(row["Count"]) for row in csv.DictReader(handle))


def full_load_rps(out_dir: Path, users: int) -> float | None:
    """Requests per second from the moment every user was running to the end."""
    path = out_dir / f"{CSV_PREFIX}_stats_history.csv"
    if not path.exists():
        return None
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    full = [row for row in rows if int(row["User Count"]) >= users]
    if len(full) < 2:
        return None
    first, last = full[0], full[-1]
    seconds = int(last["Timestamp"]) - int(first["Timestamp"])
    if seconds <= 0:
        return None
    return (int(last["Total Request Count"]) - int(first["Total Request Count"])) / seconds


# -- judging and printing -------------------------------------------------------------------


def judge(outcome: Outcome, thresholds: Thresholds) -> None:
    total = outcome.total
    requests = total.requests if total else 0
    failures = total.failures if total else 0
    checks: list[tuple[str, bool, str]] = [
        ("locust ran to the end", outcome.locust_exit_code in (0, 1),
         f"exit code {outcome.locust_exit_code}"),
        ("requests", requests >= thresholds.min_requests,
         f"{requests} >= {thresholds.min_requests}"),
        ("failed requests", failures <= thresholds.max_failures,
         f"{failures} <= {thresholds.max_failures}"),
        ("consistency violations",
         outcome.consistency_violations <= thresholds.max_consistency_violations,
         f"{outcome.consistency_violations} <= {thresholds.max_consistency_violations}"),
        ("locustfile exceptions", outcome.exceptions <= thresholds.max_exceptions,
         f"{outcome.exceptions} <= {thresholds.max_exceptions}"),
    ]  # fmt: skip
    for label, bound in (("p95", thresholds.p95_ms), ("p99", thresholds.p99_ms)):
        if bound is not None and total:
            value = getattr(total, label)
            checks.append((label, value <= bound, f"{value:.0f} ms <= {bound:.0f} ms"))
    if thresholds.min_rate_share is not None and outcome.pacing:
        rps = outcome.full_load_rps or 0.0
        wanted = thresholds.min_rate_share * outcome.users / outcome.pacing
        checks.append(
            ("req/s with every user running", rps >= wanted,
             f"{rps:.0f} >= {wanted:.0f} ({thresholds.min_rate_share:.0%} of users/pacing)")
        )  # fmt: skip
    if thresholds.min_connections is not None and outcome.peak_connections is not None:
        needed = min(thresholds.min_connections, outcome.users)
        checks.append(
            ("peak established connections", outcome.peak_connections >= needed,
             f"{outcome.peak_connections} >= {needed}")
        )  # fmt: skip
    outcome.checks = [{"check": c, "passed": ok, "detail": d} for c, ok, d in checks]
    outcome.passed = all(ok for _, ok, _ in checks)


def render(outcome: Outcome, profile: Profile) -> str:
    lines = [
        f"loadtest {outcome.scenario}: {outcome.users} users"
        + ("" if profile.shape else f", ramp {profile.ramp_seconds:.0f} s")
        + f", {outcome.run_time} s"
        + (f", one task per {outcome.pacing:g} s per user" if outcome.pacing else "")
        + f", {outcome.processes} locust process(es)"
        + f" -> {outcome.base_url}"
        + (", with an API key (API_KEY)" if os.environ.get("API_KEY") else ", no API key"),
        f"results: {outcome.results_dir}/ (report.html, {CSV_PREFIX}_*.csv, locust.log)",
        "",
        f"{'endpoint (latencies in ms)':<48}{'reqs':>8}{'fails':>7}{'req/s':>8}"
        f"{'p50':>7}{'p95':>7}{'p99':>7}{'max':>8}",
    ]
    rows = sorted(outcome.endpoints, key=lambda e: e.name)
    if outcome.total:
        rows.append(outcome.total)
    for e in rows:
        if e is outcome.total:
            lines.append("-" * 100)
        lines.append(
            f"{e.name[:47]:<48}{e.requests:>8}{e.failures:>7}{e.rps:>8.1f}"
            f"{e.p50:>7.0f}{e.p95:>7.0f}{e.p99:>7.0f}{e.max:>8.0f}"
        )
    lines.append("")
    extra = [f"consistency violations: {outcome.consistency_violations}",
             f"locustfile exceptions: {outcome.exceptions}"]  # fmt: skip
    if outcome.full_load_rps is not None:
        extra.append(f"req/s with all users running: {outcome.full_load_rps:.1f}")
    if outcome.peak_connections is not None:
        extra.append(f"peak connections: {outcome.peak_connections}")
    lines.append("   ".join(extra))
    for failure in outcome.failures[:5]:
        lines.append(
            f"  failure x{failure['occurrences']}: {failure['method']} {failure['name']}:"
            f" {failure['error'][:120]}"
        )
    if len(outcome.failures) > 5:
        lines.append(f"  ... {len(outcome.failures) - 5} more kinds in {CSV_PREFIX}_failures.csv")
    lines.append("thresholds:")
    for check in outcome.checks:
        mark = "PASS" if check["passed"] else "FAIL"
        lines.append(f"  {mark}  {check['check']}: {check['detail']}")
    lines.append(f"RESULT: {'PASS' if outcome.passed else 'FAIL'} ({outcome.scenario})")
    return "\n".join(lines)


# -- the commands ---------------------------------------------------------------------------


def list_scenarios() -> int:
    for p in PROFILES.values():
        t = p.thresholds
        bounds = f"p95<={t.p95_ms:.0f}ms p99<={t.p99_ms:.0f}ms" if t.p95_ms else ""
        print(f"{p.name:<11} {p.summary}\n{'':<11} 0 failures, 0 consistency violations {bounds}")
    return 0


def latest_results(results: Path) -> Path | None:
    runs = sorted(d for d in results.glob("*-*") if (d / "report.html").exists())
    return runs[-1] if runs else None


def show_report(results: Path) -> int:
    latest = latest_results(results)
    if latest is None:
        print(f"no report under {results}: run a scenario first (make loadtest-smoke)")
        return 1
    report = latest / "report.html"
    summary = latest / "summary.txt"
    if summary.exists():
        print(summary.read_text())
    print(f"\nHTML report: {report}")
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin":
        webbrowser.open(report.as_uri())
    return 0


def run_scenario(args: argparse.Namespace) -> int:
    profile = effective_profile(PROFILES[args.scenario], args)
    base_url = (args.base_url or f"http://127.0.0.1:{os.environ.get('PORT', '8080')}").rstrip("/")
    problem = check_target(base_url)
    if problem:
        print(f"loadtest {profile.name}: {problem}")
        print("start the API first: make up && make migrate-up && scripts/api.sh start")
        return 2
    if profile.shape and (args.users or args.run_time or args.spawn_rate):
        print("note: this scenario's load shape sets users and duration; overrides ignored")
    if args.pacing and PROFILES[args.scenario].pacing is None:
        print("note: this scenario has a random think time, not a pacing; PACING ignored")
    for warning in raise_file_limit(profile.users, profile.processes) + server_file_limit_warning(
        base_url, profile.users
    ):
        print(f"warning: {warning}")

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.results_dir / f"{stamp}-{profile.name}"
    for n in range(2, 100):
        if not out_dir.exists():
            break
        out_dir = args.results_dir / f"{stamp}-{profile.name}-{n}"  # two runs in one second
    out_dir.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "locust",
        "-f", str(ROOT / "loadtest" / "scenarios" / f"{profile.module}.py"),
        "--headless", "--only-summary",
        "--host", base_url,
        "--csv", str(out_dir / CSV_PREFIX),
        "--html", str(out_dir / "report.html"),
        "--stop-timeout", str(STOP_TIMEOUT),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if not profile.shape:
        cmd += ["--users", str(profile.users), "--spawn-rate", f"{profile.spawn_rate:g}"]
        cmd += ["--run-time", f"{profile.run_time}s"]
    if profile.processes > 1:
        cmd += ["--processes", str(profile.processes)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if profile.pacing:
        env["LOADTEST_PACING"] = f"{profile.pacing:g}"
    (out_dir / "command.txt").write_text(" ".join(cmd) + "\n")

    print(
        f"loadtest {profile.name}: {profile.summary}\n"
        f"  {profile.users} users, {profile.run_time} s -> {base_url}; results in {out_dir}/",
        flush=True,
    )
    parts = urlsplit(base_url)
    monitor = None
    if parts.hostname in LOCAL_HOSTS:
        monitor = ConnectionMonitor(parts.port or 80)
        monitor.start()
    deadline = time.monotonic() + profile.run_time + STOP_TIMEOUT + GRACE_SECONDS
    code = run_locust(cmd, out_dir, deadline, env, profile.run_time)
    if monitor:
        monitor.stop()

    endpoints, total = read_stats(out_dir)
    failures = read_failures(out_dir)
    outcome = Outcome(
        scenario=profile.name,
        base_url=base_url,
        users=profile.users,
        run_time=profile.run_time,
        processes=profile.processes,
        pacing=profile.pacing,
        results_dir=str(out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir),
        locust_exit_code=code,
        endpoints=endpoints,
        total=total,
        failures=failures,
        consistency_violations=sum(f["occurrences"] for f in failures if CONSISTENCY in f["error"]),
        exceptions=read_exceptions(out_dir),
        full_load_rps=None if profile.shape else full_load_rps(out_dir, profile.users),
        peak_connections=monitor.peak if monitor else None,
    )
    judge(outcome, profile.thresholds)
    text = render(outcome, profile)
    print("\n" + text)
    (out_dir / "summary.txt").write_text(text + "\n")
    (out_dir / "summary.json").write_text(json.dumps(asdict(outcome), indent=2) + "\n")
    if not (out_dir / "report.html").exists():
        print(f"locust wrote no HTML report: see {out_dir / 'locust.log'}")
        return 1
    return 0 if outcome.passed else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        return list_scenarios()
    if args.report:
        return show_report(args.results_dir)
    if shutil.which("locust") is None and not (Path(sys.executable).parent / "locust").exists():
        print("locust is not installed in this Python: make venv")
        return 2
    return run_scenario(args)


if __name__ == "__main__":
    sys.exit(main())

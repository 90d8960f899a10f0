"""Online resharding end to end: `manage.py reshard` moves slots from 5 shards to 6 and back
while API clients write, read, change emails and walk the list, on a cluster of its own
(tests/reshard_cluster.py: 5 shards, then shard 5 added and the API restarted with
SHARDING_COUNT=6, owning no slot until the move).

After every move, against the primaries directly: no acknowledged write lost, no delete
resurrected, every user exactly once and on the shard the map in force names, each user's
email claimed once, on its email's shard, pointing to the user, no row of a moved slot left
on its source, trigger-kept user counters equal to the rows, no logical replication object
left behind, and the map equal to slot_map(N); in the workload, no stale read, no 5xx, no
connection error. The write pause (the longest write during the move) and p99 latency
before / during / after each move are printed (and appended to var/reshard-logs/timing.log).
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from shards.routing import slot_map
from tests.reshard_cluster import LOG_DIR, ReshardCluster, check_layout, describe, share
from tests.reshard_workload import Workload, failures, timing, verify

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]
SEED = 3000
COMMAND_TIMEOUT = 180


@pytest.fixture(scope="module")
def cluster():
    c = ReshardCluster(shards=5)
    try:
        c.clean()
        c.up()
        c.migrate_shards()
        c.start_api()
        c.wait_ready()
        c.seed(SEED)
        snap = c.snapshot()
        assert snap.version == 1 and snap.owners == slot_map(5), describe(snap)
        assert sum(snap.counts().values()) == SEED, describe(snap)
        assert not check_layout(snap), check_layout(snap)
        # Shard 5 joins: its hosts, its schema, an API that knows it. It owns no slot yet.
        c.set_shards(6)
        c.up()
        c.migrate_shards()
        c.restart_api()
        c.wait_ready()
        snap = c.snapshot()
        assert snap.owners == slot_map(5), describe(snap)
        assert not snap.users[5] and not snap.claims[5], describe(snap)
        assert not check_layout(snap), check_layout(snap)
        c.seeded = {uid: email for uid, (_name, email) in snap.all_users().items()}
        yield c
    finally:
        c.stop_api()
        c.down()


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _precondition(cluster: ReshardCluster) -> None:
    version, owners = cluster.current_map()
    assert owners == slot_map(5), f"map v{version} is not slot_map(5) before the move"
    assert cluster.job_phase() in (None, "done", "aborted"), cluster.job_phase()


def _after_move(cluster: ReshardCluster, report, to: int, label: str, **allow) -> list[str]:
    """Every check of a finished move (empty: it passed); prints the timing summary."""
    snap = cluster.snapshot()
    verify(report, snap)
    out = failures(report, **allow)
    out += check_layout(snap)
    if snap.owners != slot_map(to):
        differ = sum(1 for a, b in zip(snap.owners, slot_map(to), strict=True) if a != b)
        out.append(f"map v{snap.version} differs from slot_map({to}) in {differ} slots")
    if to == 6:
        got = share(snap, 5)
        if abs(got - 1 / 6) > 0.02:
            out.append(f"shard 5 holds {got:.1%} of users, not 1/6 +- 2 %: {describe(snap)}")
    elif snap.users.get(5) or snap.claims.get(5):
        out.append(f"shard 5 still holds rows after the move away: {describe(snap)}")
    out += cluster.map_leftovers()
    phase = cluster.job_phase()
    if phase != "done":
        out.append(f"latest reshard_job phase is {phase!r}, not 'done'")
    out += [f"left behind: {x}" for x in cluster.replication_leftovers()]
    summary = timing(report, "move", "moved")
    summary["layout"] = describe(snap)
    line = f"{label}: {json.dumps(summary)}"
    print(line)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "timing.log", "a") as log:
        log.write(line + "\n")
    return out


def _command_failed(done, what: str) -> list[str]:
    if done.returncode == 0:
        return []
    return [f"{what} exited {done.returncode}:\n{_tail(done.stdout)}\n{_tail(done.stderr)}"]


def _move_under_load(cluster: ReshardCluster, to: int, clients: int) -> list[str]:
    load = Workload(cluster.base_url, seeded=cluster.seeded, clients=clients).start()
    time.sleep(3)
    load.mark("move")
    done = cluster.manage("reshard", "--to", str(to), "--yes", timeout=COMMAND_TIMEOUT)
    load.mark("moved")
    time.sleep(3)
    report = load.stop()
    out = _command_failed(done, f"reshard --to {to} --yes")
    return out + _after_move(cluster, report, to, f"--to {to} under {clients} clients")


def test_without_a_move_the_workload_and_checks_find_nothing(cluster):
    """The harness's own baseline: the same clients and checks, no move, no problem."""
    load = Workload(cluster.base_url, seeded=cluster.seeded, clients=8).start()
    time.sleep(2)
    load.mark("move")
    time.sleep(2)
    load.mark("moved")
    time.sleep(1)
    report = load.stop()
    snap = cluster.snapshot()
    verify(report, snap)
    problems = failures(report) + check_layout(snap)
    if snap.owners != slot_map(5) or snap.users[5] or snap.claims[5]:
        problems.append(f"the layout changed without a move: {describe(snap)}")
    print(f"baseline: {json.dumps(timing(report, 'move', 'moved'))}")
    assert report.walks, "no list walk finished"
    assert not problems, "\n".join(problems)


def test_grow_to_six_shards_and_back_under_load(cluster):
    _precondition(cluster)
    # --plan first: it prints the move and changes nothing.
    before, phase = cluster.current_map(), cluster.job_phase()
    plan = cluster.manage("reshard", "--to", "6", "--plan", timeout=60)
    assert plan.returncode == 0, _tail(plan.stdout + plan.stderr)
    assert "shard 0 -> shard 5" in plan.stdout, plan.stdout
    assert (cluster.current_map(), cluster.job_phase()) == (before, phase), "--plan changed state"
    assert not cluster.replication_leftovers() and not cluster.map_leftovers()
    problems = _move_under_load(cluster, 6, clients=8)
    assert not problems, "\n".join(["reshard --to 6:", *problems])
    problems = _move_under_load(cluster, 5, clients=8)
    assert not problems, "\n".join(["reshard --to 5:", *problems])


def _interrupted_move(cluster: ReshardCluster, to: int, phase: str, pause: float) -> list[str]:
    """Start the move, SIGKILL it once the job is in `phase`, run it again to its end.
    Killed in 'cutover', its write fence stands until the rerun: writes that meet it may
    honestly answer 503 (counted, not failed); everything else is checked as under load."""
    load = Workload(cluster.base_url, seeded=cluster.seeded, clients=3).start()
    time.sleep(1)
    load.mark("move")
    first = cluster.start_manage(
        "reshard", "--to", str(to), "--yes", RESHARD_PAUSE=f"{phase}={pause:g}"
    )
    out = []
    try:
        cluster.wait_phase(phase, first, timeout=90)
        time.sleep(0.5)  # well inside the pause
    finally:
        cluster.kill(first)
    if cluster.job_phase() != phase:
        out.append(f"after SIGKILL in {phase!r} the job is in {cluster.job_phase()!r}")
    done = cluster.manage("reshard", "--to", str(to), "--yes", timeout=COMMAND_TIMEOUT)
    load.mark("moved")
    time.sleep(2)
    report = load.stop()
    out += _command_failed(done, f"resumed reshard --to {to} --yes")
    label = f"--to {to} killed in {phase}, resumed"
    return out + _after_move(cluster, report, to, label, allow_503=phase == "cutover")


def test_a_move_killed_mid_phase_continues_when_run_again(cluster):
    _precondition(cluster)
    problems = _interrupted_move(cluster, 6, "copy", 5)
    assert not problems, "\n".join(["reshard --to 6 killed in copy:", *problems])
    problems = _interrupted_move(cluster, 5, "cutover", 3)
    assert not problems, "\n".join(["reshard --to 5 killed in cutover:", *problems])


def _readable(cluster: ReshardCluster, user_ids: list[str]) -> list[str]:
    def get(chunk: list[str]) -> list[str]:
        bad = []
        with requests.Session() as session:
            for user_id in chunk:
                r = session.get(f"{cluster.base_url}/api/v1/users/{user_id}", timeout=30)
                if r.status_code != 200:
                    bad.append(f"{user_id}: {r.status_code}")
        return bad

    chunks = [user_ids[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        return [line for bad in pool.map(get, chunks) for line in bad]


def test_abort_undoes_a_move_that_has_not_switched(cluster):
    _precondition(cluster)
    version_before, owners_before = cluster.current_map()
    first = cluster.start_manage("reshard", "--to", "6", "--yes", RESHARD_PAUSE="copy=5")
    try:
        cluster.wait_phase("copy", first, timeout=90)
        time.sleep(0.5)
    finally:
        cluster.kill(first)
    done = cluster.manage("reshard", "--abort", timeout=COMMAND_TIMEOUT)
    problems = _command_failed(done, "reshard --abort")
    version, owners = cluster.current_map()
    if owners != owners_before or owners != slot_map(5):
        differ = sum(1 for a, b in zip(owners, slot_map(5), strict=True) if a != b)
        problems.append(f"map v{version} (was v{version_before}) differs from slot_map(5) in"
                        f" {differ} slots")  # fmt: skip
    problems += cluster.map_leftovers()
    if cluster.job_phase() != "aborted":
        problems.append(f"latest reshard_job phase is {cluster.job_phase()!r}, not 'aborted'")
    snap = cluster.snapshot()
    if snap.users[5] or snap.claims[5]:
        problems.append(f"shard 5 holds rows after the abort: {describe(snap)}")
    problems += check_layout(snap)
    problems += [f"left behind: {x}" for x in cluster.replication_leftovers()]
    unreadable = _readable(cluster, sorted(snap.all_users()))
    if unreadable:
        problems.append(f"{len(unreadable)} users not readable via the API: {unreadable[:10]}")
    missing = set(cluster.seeded) - set(snap.all_users())
    if missing:
        problems.append(f"{len(missing)} seeded users gone: {sorted(missing)[:5]}")
    assert not problems, "\n".join(["reshard --abort:", *problems])

"""Migrate `default` and every shard primary, in parallel, one line per database.

Each database's line is printed as soon as it is done. While some still run, a terminal
shows one redrawn line naming the migration each is on; a log gets a plain line per running
database every `--progress-every` seconds. Re-running after a failure is safe (each database
records what it applied). A target
(`migrate_shards users 0001`) migrates forwards or backwards to it on every shard.
`--check` applies nothing: it lists what each database has applied and fails when any
database has pending migrations or differs from the others (drift)."""

import io
import re
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from django.apps import apps
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, router
from django.db.migrations.executor import MigrationExecutor

from messenger.commands import error_line
from shards.topology import all_shards

# What Django's migrate prints as it starts a step: "  Applying users.0005_slot_columns..."
_STEP = re.compile(r"(Applying|Unapplying) (\S+?)\.\.\.")


def _app_allowed(alias: str, app_label: str) -> bool:
    return bool(router.allow_migrate(alias, app_label))


class _Output(io.StringIO):
    """One database's `migrate` output, and the step it is on now."""

    def __init__(self) -> None:
        super().__init__()
        self.step = "checking migrations"
        self.since = time.monotonic()

    def write(self, text: str) -> int:
        if match := _STEP.search(text):
            self.step = f"{match[1].lower()} {match[2]}"
            self.since = time.monotonic()
        return super().write(text)

    def status(self) -> str:
        return f"{self.step} ({time.monotonic() - self.since:.0f} s)"


class Command(BaseCommand):
    help = "Apply migrations to the default database and to every shard primary."

    def add_arguments(self, parser):
        parser.add_argument("app_label", nargs="?", help="Only this app.")
        parser.add_argument("migration_name", nargs="?", help="Target migration ('zero' too).")
        parser.add_argument("--shard", type=int, help="Only this shard (and not default).")
        parser.add_argument("--check", action="store_true", help="Report and fail on drift.")
        parser.add_argument(
            "--rollback-last",
            metavar="APP",
            help="Roll APP back by one migration (to the parent of its latest) everywhere.",
        )
        parser.add_argument(
            "--progress-every",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="Without a terminal: a line per still-running database this often.",
        )

    def _aliases(self, shard: int | None, app_label: str | None) -> list[str]:
        if shard is not None:
            if not 0 <= shard < len(all_shards()):
                raise CommandError(f"no shard {shard}: there are {len(all_shards())}")
            aliases = [all_shards()[shard].primary_alias]
        else:
            aliases = ["default"] + [s.primary_alias for s in all_shards()]
        if app_label:
            aliases = [a for a in aliases if _app_allowed(a, app_label)]
        return aliases

    def _migrate(
        self, alias: str, app_label: str | None, target: str | None, out: _Output
    ) -> tuple[bool, str]:
        args = [a for a in (app_label, target) if a]
        try:
            call_command(
                "migrate",
                *args,
                database=alias,
                interactive=False,
                verbosity=1,
                no_color=True,  # its lines are parsed below
                stdout=out,
            )
        except Exception as exc:  # one failing shard must not stop the others
            return False, f"FAILED: {error_line(exc)}"
        finally:
            connections[alias].close()
        changes = []
        for line in out.getvalue().splitlines():
            verb, _, rest = line.strip().partition(" ")
            name = rest.removesuffix("... OK").strip()
            if verb in ("Applying", "Unapplying") and _app_allowed(alias, name.split(".")[0]):
                changes.append(f"{'applied' if verb == 'Applying' else 'rolled back'} {name}")
        return True, ", ".join(changes) or "up to date"

    def _state(self, alias: str) -> tuple[set[tuple[str, str]], list[str]]:
        connection = connections[alias]
        try:
            executor = MigrationExecutor(connection)
            applied = {
                key
                for key in executor.recorder.applied_migrations()
                if apps.is_installed(key[0]) or key[0] in executor.loader.migrated_apps
            }
            applied = {key for key in applied if _app_allowed(alias, key[0])}
            targets = [
                key for key in executor.loader.graph.leaf_nodes() if _app_allowed(alias, key[0])
            ]
            pending = [
                f"{m.app_label}.{m.name}"
                for m, backwards in executor.migration_plan(targets)
                if not backwards
            ]
            return applied, pending
        finally:
            connection.close()

    def _previous(self, app_label: str) -> str:
        """The migration before APP's latest on disk ('zero' if it is the first)."""
        loader = MigrationExecutor(connections["default"]).loader
        leaves = [name for app, name in loader.graph.leaf_nodes() if app == app_label]
        if not leaves:
            raise CommandError(f"app {app_label!r} has no migrations")
        parents = [
            name
            for app, name in loader.graph.node_map[(app_label, leaves[0])].parents
            if app == app_label
        ]
        return parents[0] if parents else "zero"

    def handle(
        self,
        *args,
        app_label=None,
        migration_name=None,
        shard=None,
        check=False,
        rollback_last=None,
        **kw,
    ):
        if rollback_last:
            app_label, migration_name = rollback_last, self._previous(rollback_last)
        aliases = self._aliases(shard, app_label)
        if check:
            return self._check(aliases)
        failed = self._migrate_all(
            aliases, app_label, migration_name, kw.get("verbosity", 1), kw["progress_every"]
        )
        if failed:
            raise CommandError(f"migrations failed on: {', '.join(failed)}")

    def _migrate_all(
        self,
        aliases: list[str],
        app_label: str | None,
        target: str | None,
        verbosity: int,
        every: float,
    ) -> list[str]:
        """Migrate in parallel; print each database's line as it finishes. Returns the
        databases that failed."""
        outputs = {alias: _Output() for alias in aliases}
        tty = self.stdout.isatty()
        started = last_status = time.monotonic()
        failed, changed = [], 0
        with ThreadPoolExecutor(max_workers=len(aliases)) as pool:
            running = {
                pool.submit(self._migrate, alias, app_label, target, outputs[alias]): alias
                for alias in aliases
            }
            while running:
                done, _ = wait(running, timeout=0.5 if tty else every, return_when=FIRST_COMPLETED)
                for future in done:
                    alias = running.pop(future)
                    ok, message = future.result()
                    if not ok:
                        failed.append(alias)
                    elif message != "up to date":
                        changed += 1
                    if verbosity > 0 or not ok:
                        style = self.style.SUCCESS if ok else self.style.ERROR
                        # Over the status line, which is redrawn below it.
                        clear = "\r\x1b[K" if tty else ""
                        self.stdout.write(clear + style(f"{alias:>10}: {message}"))
                if not running or verbosity == 0:
                    continue
                if tty:
                    names = sorted(running.values())
                    status = " · ".join(f"{a} {outputs[a].status()}" for a in names)
                    width = shutil.get_terminal_size().columns - 1
                    self.stdout.write(f"\r\x1b[K{status[:width]}", ending="")
                    self.stdout.flush()
                elif time.monotonic() - last_status >= every:
                    last_status = time.monotonic()
                    for alias in sorted(running.values()):
                        self.stdout.write(f"{alias:>10}: still {outputs[alias].status()}")
        if verbosity > 0:
            self.stdout.write(
                f"done in {time.monotonic() - started:.1f} s: {changed} changed, "
                f"{len(aliases) - changed - len(failed)} up to date, {len(failed)} failed"
            )
        return failed

    def _check(self, aliases: list[str]) -> None:
        problems = []
        shard_states = {}
        for alias in aliases:
            try:
                applied, pending = self._state(alias)
            except Exception as exc:
                problems.append(alias)
                self.stdout.write(self.style.ERROR(f"{alias:>10}: unreachable ({error_line(exc)})"))
                continue
            names = sorted(f"{a}.{n}" for a, n in applied)
            line = f"{alias:>10}: {len(names)} applied"
            if pending:
                problems.append(alias)
                line += f", PENDING {', '.join(pending)}"
            self.stdout.write(line)
            if alias != "default":
                shard_states[alias] = frozenset(names)
        if len(set(shard_states.values())) > 1:
            problems.append("drift between shards")
            for alias, names in shard_states.items():
                self.stdout.write(f"  {alias}: {', '.join(sorted(names))}")
        if problems:
            raise CommandError(f"migration check failed: {', '.join(problems)}")
        self.stdout.write(self.style.SUCCESS("all databases up to date and identical"))

"""Django's PostgreSQL backend, naming the server a connection failed to reach, building its
connection parameters once, and leaving autocommit alone when it already has the value asked.

libpq names host and port when a server refuses, but psycopg's own connect timeout says
only "connection timeout expired": the note added here says which database it was. The
exception itself (type, message) is unchanged, so callers that tell errors apart still can."""

import copy

from django.conf import settings
from django.db.backends.postgresql import base

# alias -> (the settings the parameters were built from, USE_TZ then, the parameters).
_built: dict[str, tuple[dict, bool, dict]] = {}


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        # With a pool, Django connects (checks a connection out) on every request and asks
        # for these each time, though only the pool's creation uses them: building them
        # reads settings through LazySettings, ~20 µs of a ~650 µs GET (bench/profile.py
        # get_ours), five times per list page. They depend on the alias's settings and
        # USE_TZ only (Django's adapters), so they are rebuilt when either changes.
        use_tz = settings.USE_TZ
        built = _built.get(self.alias)
        if built is None or built[1] != use_tz or built[0] != self.settings_dict:
            params = super().get_connection_params()
            built = (copy.deepcopy(self.settings_dict), use_tz, params)
            _built[self.alias] = built
        return dict(built[2])  # a copy: Django adds keys to it (the pool, "autocommit")

    def _set_autocommit(self, autocommit: bool) -> None:
        # Django sets autocommit each time the pool lends a connection, which already has
        # it: psycopg's setter still runs its checks through a wait, ~3 µs of each checkout.
        if self.connection.autocommit != autocommit:
            super()._set_autocommit(autocommit)

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except base.Database.OperationalError as exc:
            host, port = conn_params.get("host") or "localhost", conn_params.get("port") or 5432
            exc.add_note(f"database {self.alias} at {host}:{port}")
            raise

"""Django's PostgreSQL backend, naming the server a connection failed to reach.

libpq names host and port when a server refuses, but psycopg's own connect timeout says
only "connection timeout expired": the note added here says which database it was. The
exception itself (type, message) is unchanged, so callers that tell errors apart still can."""

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except base.Database.OperationalError as exc:
            host, port = conn_params.get("host") or "localhost", conn_params.get("port") or 5432
            exc.add_note(f"database {self.alias} at {host}:{port}")
            raise

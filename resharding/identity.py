"""Each shard database records which shard it is, so that a configuration pointing shard i
at another shard's database is refused instead of serving (or moving) the wrong rows.

The record is a setting of the database itself (`ALTER DATABASE ... SET messenger.shard_id`),
written after every migration of a shard primary and read from the catalog, so a replica
carries it too. SQL because it is a property of the database, not a row of a model."""

from django.db import DatabaseError, connections
from psycopg import sql

from shards.topology import all_shards, shard_for_alias

SETTING = "messenger.shard_id"


def record(alias: str) -> None:
    """Write the shard id of `alias` (a shard primary) into its database."""
    shard = shard_for_alias(alias)
    if shard is None or alias != shard.primary_alias:
        return
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}")
            .format(
                sql.Identifier(connection.settings_dict["NAME"]),
                sql.Identifier(*SETTING.split(".")),
                sql.Literal(str(shard.id)),
            )
            .as_string(cursor.connection)
        )


def recorded(alias: str) -> int | None:
    """The shard id the database of `alias` says it is (None: never recorded)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT option_value FROM pg_db_role_setting s"
            " JOIN pg_database d ON d.oid = s.setdatabase AND d.datname = current_database(),"
            " pg_options_to_table(s.setconfig) WHERE s.setrole = 0 AND option_name = %s",
            [SETTING],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def problems() -> list[str]:
    """Configured shards whose database says it is another shard. A database that does not
    answer is left to the health checks; one with no record yet passes."""
    found = []
    for shard in all_shards():
        try:
            said = recorded(shard.primary_alias)
        except DatabaseError:
            continue
        finally:
            connections[shard.primary_alias].close()
        if said is not None and said != shard.id:
            found.append(
                f"{shard.primary_alias} is configured as shard {shard.id}, but its database"
                f" says it is shard {said}"
            )
    return found

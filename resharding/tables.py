"""The tables a move carries: every sharded model with a shard key, by its `slot` column
(shards.models.slot_field, NOT NULL) and a unique index on (slot, primary key) named
`<table>_slot_<pk>`. A shard-local table (shard_key None, e.g. user_counts) stays."""

from dataclasses import dataclass

from django.apps import apps

from shards.models import is_sharded


class NotMovable(Exception):
    pass


@dataclass(frozen=True)
class MovedTable:
    name: str
    pk: str  # the primary key's column
    columns: tuple[str, ...]  # what a checksum covers: every column the database does not compute

    @property
    def identity_index(self) -> str:
        """The unique (slot, primary key) index every moved table has (users' migration
        0005): a source's REPLICA IDENTITY while it publishes, so that its row filter on
        `slot` sees updates and deletes."""
        return f"{self.name}_slot_{self.pk}"


def moved_tables() -> list[MovedTable]:
    tables = []
    for model in apps.get_models():
        if not is_sharded(model) or model.shard_key is None:
            continue
        fields = {field.name: field for field in model._meta.concrete_fields}
        if "slot" not in fields:
            raise NotMovable(f"{model.__name__} has no slot column (shards.models.slot_field)")
        columns = tuple(field.column for field in fields.values() if not field.generated)
        tables.append(MovedTable(model._meta.db_table, model._meta.pk.column, columns))
    return sorted(tables, key=lambda table: table.name)

"""Each row stores the slot of its shard key, so that resharding can move rows slot by slot.

`slot` is a stored generated column (`key_slot(key::text)`, the same value as
shards.routing.slot_for_key) with a unique index on (slot, key): a source shard of a move
makes that index its REPLICA IDENTITY, which lets a publication's row filter on `slot` see
updates and deletes (a filter may not call md5() of a cast itself), and a move reads, checks
and deletes the rows of its slots by it instead of scanning the table. Adding the column
rewrites the table once."""

from django.db import migrations

from shards.models import KEY_SLOT_SQL, slot_field

FORWARD = """
ALTER TABLE users ADD COLUMN slot smallint GENERATED ALWAYS AS (key_slot(id::text)) STORED NOT NULL;
CREATE UNIQUE INDEX users_slot_id ON users (slot, id);
ALTER TABLE email_lookup
    ADD COLUMN slot smallint GENERATED ALWAYS AS (key_slot(email::text)) STORED NOT NULL;
CREATE UNIQUE INDEX email_lookup_slot_email ON email_lookup (slot, email);
"""

BACKWARD = """
ALTER TABLE users DROP COLUMN slot;
ALTER TABLE email_lookup DROP COLUMN slot;
"""


class Migration(migrations.Migration):
    dependencies = [("users", "0004_email_lookup_primary_key_only")]

    operations = [
        migrations.RunSQL(KEY_SLOT_SQL, "DROP FUNCTION IF EXISTS key_slot(text)"),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.AddField("user", "slot", slot_field("id")),
                migrations.AddField("emaillookup", "slot", slot_field("email")),
            ],
        ),
    ]

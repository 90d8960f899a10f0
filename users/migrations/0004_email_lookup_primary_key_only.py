"""email_lookup is read and written by its primary key only: drop the other indexes.

Django gives a varchar primary key a second `varchar_pattern_ops` index for LIKE queries;
nothing here searches emails by prefix, and every claim would pay to update it."""

from django.db import migrations

LIKE_INDEX = "email_lookup_email_94277df9_like"


class Migration(migrations.Migration):
    dependencies = [("users", "0003_remove_email_claim_confirmed")]

    operations = [
        migrations.RemoveIndex(model_name="emaillookup", name="email_lookup_user_id_idx"),
        migrations.RunSQL(
            f"DROP INDEX IF EXISTS {LIKE_INDEX}",
            f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON email_lookup (email varchar_pattern_ops)",
        ),
    ]

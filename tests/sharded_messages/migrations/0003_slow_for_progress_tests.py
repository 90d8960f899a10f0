"""Does nothing, slowly when a test asks: what migrate_shards shows during a long migration
is tested on the real databases with it (SLOW_TEST_MIGRATION_SECONDS, 0 unless a test sets
it)."""

import time

from django.conf import settings
from django.db import migrations


def _wait(apps, schema_editor) -> None:
    time.sleep(getattr(settings, "SLOW_TEST_MIGRATION_SECONDS", 0))


class Migration(migrations.Migration):
    dependencies = [("sharded_messages", "0002_slot")]

    operations = [migrations.RunPython(_wait, migrations.RunPython.noop)]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shards", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="slotmap",
            name="foreign",
            field=models.JSONField(
                default=dict,
                help_text="Shard id -> slots whose rows it may hold without owning them (copies"
                " of a move in progress, not yet cleaned up): lists there skip them.",
            ),
        ),
        migrations.AddField(
            model_name="slotmap",
            name="positions",
            field=models.JSONField(
                default=dict,
                help_text="Shard id -> WAL position (int) its replica must have replayed before"
                " it serves reads: the position a move's target reached when it took its slots.",
            ),
        ),
    ]

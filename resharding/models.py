"""The state of a slot move, in the control database, so that a move interrupted anywhere
can be continued (`reshard --yes` again) or undone before its switch (`reshard --abort`)."""

from django.db import models


class ReshardJob(models.Model):
    PHASES = ("prepare", "copy", "cutover", "cleanup", "done", "aborted")

    target_count = models.PositiveIntegerField(help_text="Shards that own slots afterwards.")
    from_version = models.PositiveIntegerField(help_text="The slot map version moved from.")
    switched_version = models.PositiveIntegerField(
        null=True, help_text="The map version that gave the slots to their new owners."
    )
    phase = models.CharField(max_length=16, choices=[(p, p) for p in PHASES])
    # [{"source": 0, "target": 5, "slots": [...], "rows": {"users": n, "email_lookup": n}}]
    moves = models.JSONField()
    write_pause = models.FloatField(null=True, help_text="Seconds from fence to switch.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "reshard_job"

    def __str__(self) -> str:
        return f"reshard #{self.pk} to {self.target_count} shards: {self.phase}"

    @property
    def active(self) -> bool:
        return self.phase not in ("done", "aborted")

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.save(update_fields=["phase", "updated_at"])

    @classmethod
    def latest(cls) -> "ReshardJob | None":
        return cls.objects.order_by("-id").first()

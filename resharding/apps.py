from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _record_identity(sender, using: str, **kwargs) -> None:
    from resharding import identity

    identity.record(using)


class ReshardingConfig(AppConfig):
    name = "resharding"
    verbose_name = "Resharding"

    def ready(self) -> None:
        # After every migration of a shard primary: it records which shard it is.
        post_migrate.connect(_record_identity, sender=self)

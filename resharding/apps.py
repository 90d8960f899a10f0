from django.apps import AppConfig


class ReshardingConfig(AppConfig):
    name = "resharding"
    verbose_name = "Resharding"

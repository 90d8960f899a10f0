from django.apps import AppConfig


class ShardsConfig(AppConfig):
    name = "shards"

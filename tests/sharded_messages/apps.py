from django.apps import AppConfig


class ShardedMessagesConfig(AppConfig):
    name = "tests.sharded_messages"
    label = "sharded_messages"
    default_auto_field = "django.db.models.BigAutoField"

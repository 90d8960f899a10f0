"""manage.py api_keys create NAME | revoke PREFIX | list"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apikeys import keys
from apikeys.models import ApiKey


class Command(BaseCommand):
    help = "Create (the key is printed once), revoke or list API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a key and print it (only now).")
        create.add_argument("name", help="Who or what uses the key.")
        revoke = actions.add_parser("revoke", help="Revoke a key by its prefix (see list).")
        revoke.add_argument("prefix")
        actions.add_parser("list", help="Every key: prefix, state, creation time, name.")

    def handle(self, *args, action: str, **options) -> None:
        if action == "create":
            _, key = keys.create_key(options["name"])
            self.stdout.write(key)
        elif action == "revoke":
            revoked = keys.revoke_key(options["prefix"])
            if revoked is None:
                raise CommandError(f"no API key has the prefix {options['prefix']!r}")
            self.stdout.write(f"revoked {revoked.prefix} ({revoked.name})")
        else:
            for key in ApiKey.objects.all():
                state = "revoked" if key.revoked else "active"
                created = key.created_at.isoformat(timespec="seconds")
                self.stdout.write(f"{key.prefix}  {state:7}  {created}  {key.name}")

"""Settings of the test suite: the project's own, plus a test-only sharded app that proves a
second sharded model needs no change in shards/."""

from messenger.settings import *  # noqa: F403
from messenger.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.sharded_messages.apps.ShardedMessagesConfig"]

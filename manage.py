#!/usr/bin/env python
"""Django's command-line utility for the messenger project."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")
    from messenger.commands import execute

    execute(sys.argv)


if __name__ == "__main__":
    main()

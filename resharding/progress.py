"""What a move shows while it runs: a progress bar (tqdm: rows or bytes, rate, ETA) on a
terminal, and one timestamped line per phase on stdout in any case, which is what logs keep."""

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from tqdm import tqdm


class Reporter:
    def __init__(self, write: Callable[[str], None], prefix: str) -> None:
        self._write = write
        self.prefix = prefix

    def line(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._write(f"{stamp} {self.prefix} {text}")

    def bar(self, total: int, unit: str, desc: str) -> tqdm:
        """A bar on stderr when it is a terminal; silent otherwise (the phase line says it)."""
        return tqdm(
            total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr,
            disable=not sys.stderr.isatty(), mininterval=0.5, leave=False,
        )  # fmt: skip


class Timer:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

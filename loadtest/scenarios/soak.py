"""soak: steady moderate load for 5 minutes (make loadtest-soak).

60 users each start one task per second (paced, random phases): a flat ~60 req/s, so that leaks
(connections, memory, file descriptors) and slow drift show up as failures or as a p99
that climbs, not as noise from a changing load."""

import os

from loadtest.mixed import MixedUser, mix, paced, spread_first_task

PACING = float(os.environ.get("LOADTEST_PACING") or 1.0)


class SoakUser(MixedUser):
    wait_time = paced(PACING)
    tasks = mix(reads=70)

    def on_start(self) -> None:
        super().on_start()
        spread_first_task(self, PACING)

"""custom: the mixed workload at a size you choose (make loadtest-custom USERS=N DURATION=S).

Each user starts one task every LOADTEST_PACING seconds (PACING=S in make; default 1 s), so
the offered load is about USERS / PACING tasks per second whatever the response times."""

import os

from loadtest.mixed import MixedUser, mix, paced, spread_first_task

PACING = float(os.environ.get("LOADTEST_PACING") or 1.0)


class CustomUser(MixedUser):
    wait_time = paced(PACING)
    tasks = mix(reads=70)

    def on_start(self) -> None:
        super().on_start()
        spread_first_task(self, PACING)

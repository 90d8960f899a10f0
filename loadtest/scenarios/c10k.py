"""10k: 10,000 concurrent users, each on its own keep-alive connection (make loadtest-10k).

Users are spawned at 100/s (a 100 s ramp), then all 10,000 stay connected and active
together for the remaining 120 s. Each user opens its connection at once with a cheap
`GET /health`, waits a random part of its pacing (so that 10,000 clocks do not tick
together), then starts one task every LOADTEST_PACING seconds (`paced`, default
60 s): 10,000 users / 60 s = about 170 tasks/s, under half of what the API serves on
2 cores while the same cores also run the load generator, the PgBouncers and the ten
PostgreSQL servers. The mix is read-heavy (90 % reads, mostly by id: list pages fan out to
every shard and cost several times more) and every answer is still checked. The pacing is
shorter than the API's keep-alive timeout (75 s), so no connection is closed for idleness:
the runner's peak of established connections must reach the user count, and the request
rate with all users running must match users / pacing.
"""

import contextlib
import os

from loadtest.common import ApiUser, CheckFailed
from loadtest.mixed import MixedUser, mix, paced, spread_first_task

PACING = float(os.environ.get("LOADTEST_PACING") or 60.0)


class TenThousandUser(MixedUser):
    wait_time = paced(PACING)
    tasks = mix(
        reads=90,
        read_weights={
            MixedUser.read_own: 30,
            MixedUser.read_sampled: 30,
            MixedUser.find_by_email: 10,
            MixedUser.list_first: 6,
            MixedUser.list_next: 3,
            MixedUser.read_deleted: 3,
            ApiUser.health: 5,
        },
    )

    def on_start(self) -> None:
        with contextlib.suppress(CheckFailed):  # counted as a failure already
            self.health()  # opens this user's keep-alive connection at spawn time
        spread_first_task(self, PACING)

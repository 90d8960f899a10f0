"""spike: a sudden traffic burst (make loadtest-spike).

A load shape: 20 users for 30 s, then all at once 300 users (spawned at 300/s) for 30 s,
then back down to 20 for 30 s. The API must absorb the jump without errors and recover its
latency after it; compare the three phases in the report's charts."""

from locust import LoadTestShape, between

from loadtest.mixed import MixedUser, mix

# (end of stage in seconds, users, spawn rate per second)
STAGES = [(30, 20, 10), (60, 300, 300), (90, 20, 300)]


class SpikeUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=70)


class SpikeShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        for end, users, rate in STAGES:
            if run_time < end:
                return users, rate
        return None

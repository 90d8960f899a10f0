"""stress: high load (make loadtest-stress).

500 users for 120 s, mixed workload with a 0.5-1.5 s think time: they ask for about
500 req/s, at or above what 2 cores serve. Latency grows (queueing) but nothing may fail:
no 5xx, no timeout, no stale read."""

from locust import between

from loadtest.mixed import MixedUser, mix


class StressUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=70)

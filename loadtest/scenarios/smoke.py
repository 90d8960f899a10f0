"""smoke: a quick check that every endpoint answers right under light load.

10 users for 30 s (make loadtest-smoke), each doing the mixed workload (70 % reads) with a
0.5-1.5 s think time. Part of the test suite, shortened there."""

from locust import between

from loadtest.mixed import MixedUser, mix


class SmokeUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=70)

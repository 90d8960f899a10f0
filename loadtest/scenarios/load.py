"""load: the standard load test (make loadtest).

100 users for 60 s, mixed workload with 70 % reads and a 0.5-1.5 s think time: about
100 req/s, a quarter of what the API serves on the 2-core reference machine."""

from locust import between

from loadtest.mixed import MixedUser, mix


class LoadUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=70)

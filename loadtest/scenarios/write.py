"""write: write-heavy workload (make loadtest-write).

100 users for 60 s; 80 % of tasks are writes (create, rename by PUT or PATCH, delete), each
one claiming or releasing an email in the cross-shard lookup table as well as writing its
user row. The 20 % reads check the writes (read-your-writes with the consistency token)."""

from locust import between

from loadtest.mixed import MixedUser, mix


class WriteHeavyUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=20)

"""read: read-heavy workload (make loadtest-read).

100 users for 60 s; 80 % of tasks are reads (own users by id and by email, ids sampled from
list pages, first pages and cursor pages, deleted ids), 20 % are writes that keep the
read-your-writes checks meaningful."""

from locust import between

from loadtest.mixed import MixedUser, mix


class ReadHeavyUser(MixedUser):
    wait_time = between(0.5, 1.5)
    tasks = mix(reads=80)

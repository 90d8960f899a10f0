-- An append-only, time-partitioned table of per-user events, with retention by dropping
-- whole months: the case where table partitioning pays off (docs/PARTITIONING_GUIDE.md).
-- It is an example, not part of the product's schema. It runs on one shard database that
-- has the `users` table; tests/test_partitioning.py runs it in a scratch copy of the schema.
-- To adopt it, put the same SQL in a migration (RunSQL) of a sharded app, so that
-- `python manage.py migrate_shards` applies it on every shard.
--
--   psql -h 127.0.0.1 -p 5440 -U postgres -d <scratch database> \
--        -f scripts/partition_user_events.sql
--
-- Rows live on their user's shard (route by user_id, like the user), so the foreign key to
-- users is an ordinary local one. Idempotent: running it twice changes nothing.
\set ON_ERROR_STOP on

CREATE TABLE IF NOT EXISTS user_events (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    kind varchar(50) NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    -- Contains the partition key (a rule for unique constraints on partitioned tables);
    -- its leading user_id serves "a user's events, newest first" and the cascade.
    PRIMARY KEY (user_id, created_at, id)
) PARTITION BY RANGE (created_at);

-- One partition per calendar month (UTC), named user_events_YYYY_MM. No DEFAULT partition:
-- an event for a month without a partition fails loudly instead of landing in a catch-all
-- that would have to be scanned and split later. Returns how many partitions it created.
CREATE OR REPLACE FUNCTION user_events_ensure_partitions(first_month date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month date;
    created integer := 0;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        month := date_trunc('month', first_month) + make_interval(months => i);
        IF to_regclass(format('user_events_%s', to_char(month, 'YYYY_MM'))) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)',
                format('user_events_%s', to_char(month, 'YYYY_MM')),
                month::timestamp AT TIME ZONE 'UTC',
                (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- Retention: drop every monthly partition that ends on or before `cutoff`. Dropping a
-- partition removes its rows without DELETE, dead tuples or VACUUM. Returns how many it
-- dropped.
CREATE OR REPLACE FUNCTION user_events_drop_before(cutoff date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.oid::regclass AS name
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'user_events'::regclass
          AND c.relname ~ '^user_events_\d{4}_\d{2}$'
          AND to_date(right(c.relname, 7), 'YYYY_MM') + interval '1 month' <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %s', part.name);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- This month and the next two; call it again (e.g. monthly from cron) to stay ahead.
SELECT user_events_ensure_partitions(current_date, 3);

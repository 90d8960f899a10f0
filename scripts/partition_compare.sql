-- Three layouts of the users table side by side, to see what partitioning does to this
-- workload's two queries (a lookup by id; a keyset page on (created_at, id), newest first).
-- See docs/PARTITIONING_GUIDE.md. Run it in a scratch database, never in a shard's database:
--
--   psql -h 127.0.0.1 -p 5440 -U postgres -c 'CREATE DATABASE partition_scratch'
--   psql -h 127.0.0.1 -p 5440 -U postgres -d partition_scratch -v rows=200000 \
--        -f scripts/partition_compare.sql
--
-- users_plain     the product's layout: PRIMARY KEY (id), index (created_at DESC, id DESC)
-- users_by_month  PARTITION BY RANGE (created_at), one partition per month of 2025
-- users_by_hash   PARTITION BY HASH (id), 8 partitions
-- All three get the same rows: id = md5(n)::uuid, created_at spread evenly over 2025.
\set ON_ERROR_STOP on
\if :{?rows}
\else
\set rows 200000
\endif

DO $$
BEGIN
    IF current_database() IN ('messenger', 'messenger_test', 'control', 'control_test') THEN
        RAISE EXCEPTION 'run partition_compare.sql in a scratch database, not in %',
            current_database();
    END IF;
END $$;

DROP TABLE IF EXISTS users_plain, users_by_month, users_by_hash;

CREATE TABLE users_plain (
    id uuid NOT NULL PRIMARY KEY,
    name varchar(255) NOT NULL,
    email varchar(254) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX users_plain_created_at_id_idx ON users_plain (created_at DESC, id DESC);

-- A unique constraint on a partitioned table must contain the partition key, so the
-- primary key becomes (id, created_at): the database no longer enforces that ids are unique.
CREATE TABLE users_by_month (LIKE users_plain, PRIMARY KEY (id, created_at))
    PARTITION BY RANGE (created_at);
CREATE INDEX users_by_month_created_at_id_idx ON users_by_month (created_at DESC, id DESC);
SELECT format(
    'CREATE TABLE users_by_month_%s PARTITION OF users_by_month FOR VALUES FROM (%L) TO (%L)',
    to_char(month, 'YYYY_MM'), month, month + interval '1 month')
FROM generate_series(timestamptz '2025-01-01', '2025-12-01', interval '1 month') AS month
\gexec

CREATE TABLE users_by_hash (LIKE users_plain, PRIMARY KEY (id)) PARTITION BY HASH (id);
CREATE INDEX users_by_hash_created_at_id_idx ON users_by_hash (created_at DESC, id DESC);
SELECT format(
    'CREATE TABLE users_by_hash_%s PARTITION OF users_by_hash'
    ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)', r, r)
FROM generate_series(0, 7) AS r
\gexec

INSERT INTO users_plain
SELECT md5(n::text)::uuid, 'User ' || n, 'user' || n || '@example.com',
       timestamptz '2025-01-01' + (n - 1) * (interval '365 days' / :rows),
       timestamptz '2025-01-01' + (n - 1) * (interval '365 days' / :rows)
FROM generate_series(1, :rows) AS n;
INSERT INTO users_by_month SELECT * FROM users_plain;
INSERT INTO users_by_hash SELECT * FROM users_plain;
VACUUM ANALYZE users_plain, users_by_month, users_by_hash;

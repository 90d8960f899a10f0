-- Server-side time of a lookup by id in each layout that scripts/partition_compare.sql built:
-- the median planning and execution time of `lookups` lookups of existing ids (default
-- 2000), each statement planned anew, as the API's are (no prepared statements through
-- PgBouncer). See docs/PARTITIONING_GUIDE.md. Run it in the same scratch database:
--
--   psql -h 127.0.0.1 -p 5440 -U postgres -d partition_scratch -f scripts/partition_timing.sql
--
-- Medians of timings taken inside the server: other load on the machine moves them far less
-- than it moves a client-side throughput figure.
\set ON_ERROR_STOP on
\if :{?lookups}
\else
\set lookups 2000
\endif
SET partition_timing.lookups = :lookups;

CREATE TEMP TABLE lookup_times (layout text, planning_ms float8, execution_ms float8);

DO $$
DECLARE
    layout text;
    n integer;
    plan json;
BEGIN
    FOREACH layout IN ARRAY ARRAY['users_plain', 'users_by_month', 'users_by_hash'] LOOP
        FOR n IN 1 .. current_setting('partition_timing.lookups')::integer LOOP
            EXECUTE format(
                'EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)'
                ' SELECT * FROM %I WHERE id = md5(%L)::uuid', layout, n)
            INTO plan;
            INSERT INTO lookup_times VALUES (
                layout,
                (plan -> 0 ->> 'Planning Time')::float8,
                (plan -> 0 ->> 'Execution Time')::float8);
        END LOOP;
    END LOOP;
END $$;

SELECT layout,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY planning_ms) * 1000)::numeric)
           AS planning_us,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_ms) * 1000)::numeric)
           AS execution_us
FROM lookup_times
GROUP BY layout
ORDER BY array_position(ARRAY['users_plain', 'users_by_month', 'users_by_hash'], layout);

"""Keep user_counts exact with statement-level triggers on users.

Statement triggers with transition tables cost one UPDATE per statement (a COPY of a
million rows included), and a random bucket spreads concurrent writers over 16 rows."""

from django.db import migrations

BUCKETS = 16

FORWARD = f"""
INSERT INTO user_counts (bucket, n)
    SELECT b, 0 FROM generate_series(0, {BUCKETS - 1}) AS b ON CONFLICT DO NOTHING;
UPDATE user_counts SET n = 0;
UPDATE user_counts SET n = (SELECT count(*) FROM users) WHERE bucket = 0;

CREATE OR REPLACE FUNCTION users_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE b smallint := floor(random() * {BUCKETS});
BEGIN
    UPDATE user_counts SET n = n + (SELECT count(*) FROM added_rows) WHERE bucket = b;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION users_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE b smallint := floor(random() * {BUCKETS});
BEGIN
    UPDATE user_counts SET n = n - (SELECT count(*) FROM removed_rows) WHERE bucket = b;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION users_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_counts SET n = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER users_count_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT EXECUTE FUNCTION users_count_added();
CREATE TRIGGER users_count_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION users_count_removed();
CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_truncated();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS users_count_insert ON users;
DROP TRIGGER IF EXISTS users_count_delete ON users;
DROP TRIGGER IF EXISTS users_count_truncate ON users;
DROP FUNCTION IF EXISTS users_count_added();
DROP FUNCTION IF EXISTS users_count_removed();
DROP FUNCTION IF EXISTS users_count_truncated();
DELETE FROM user_counts;
"""


class Migration(migrations.Migration):
    dependencies = [("users", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

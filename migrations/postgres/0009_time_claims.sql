-- Time claims: who is taken when. An active Appointment claims its window [lo, hi) (microseconds
-- since the Unix epoch) for each of its practitioners and its patient; the exclusion constraint
-- refuses a second overlapping claim by the same holder, whatever door the write came through and
-- however many race (a concurrent insert waits for the first transaction, then finds the
-- conflict). Half-open ranges: back-to-back windows do not overlap. An inactive (cancelled,
-- no-show) appointment holds no claims.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL; -- created by a concurrent migration of another schema
END $$;

CREATE TABLE time_claims (
    resource_type TEXT   NOT NULL,
    resource_id   TEXT   NOT NULL,
    holder        TEXT   NOT NULL,  -- `Practitioner/<id>` or `Patient/<id>`
    lo            BIGINT NOT NULL,
    hi            BIGINT NOT NULL CHECK (hi > lo),
    PRIMARY KEY (resource_type, resource_id, holder),
    EXCLUDE USING gist (holder WITH =, int8range(lo, hi) WITH &&)
);

-- Time claims: who is taken when (see the PostgreSQL migration). SQLite has no exclusion
-- constraint; its writes are serialised by the single writer, and the store looks for an
-- overlapping claim of the same holder inside the writing transaction before it inserts one.
CREATE TABLE time_claims (
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    holder        TEXT    NOT NULL,
    lo            INTEGER NOT NULL,
    hi            INTEGER NOT NULL CHECK (hi > lo),
    PRIMARY KEY (resource_type, resource_id, holder)
);
CREATE INDEX time_claims_holder ON time_claims (holder, lo);

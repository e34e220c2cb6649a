-- Combined indexes and the index state (see the PostgreSQL migration).
CREATE TABLE idx_combo (
    rid INTEGER NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    key TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL
);
CREATE INDEX idx_combo_key_rid ON idx_combo (resource_type, param, key, rid, lo, hi);
CREATE INDEX idx_combo_key_lo ON idx_combo (resource_type, param, key, lo, hi, rid);
CREATE INDEX idx_combo_rid ON idx_combo (rid);

CREATE TABLE index_state (
    resource_type TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    building      TEXT,
    cursor        INTEGER NOT NULL DEFAULT 0
);

-- Combined indexes (`params::ComboIndex`): one row per combination of a resource's values of
-- several token parameters (the key, parts joined by U+001F), with the range of a date
-- parameter. A search naming all of them reads one range of `idx_combo_key_lo` (sorted by the
-- date) or `idx_combo_key_rid` (in row order), instead of intersecting large sets.
CREATE TABLE idx_combo (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL
);
CREATE INDEX idx_combo_key_rid ON idx_combo (resource_type, param, key, rid) INCLUDE (lo, hi);
CREATE INDEX idx_combo_key_lo ON idx_combo (resource_type, param, key, lo) INCLUDE (hi, rid);
CREATE INDEX idx_combo_rid ON idx_combo (rid);

-- What the stored index rows of each type were derived from (`params::fingerprint`): a type
-- whose declarations changed is rebuilt when the store opens, in batches that any replica
-- may continue (`cursor`: the last row rebuilt for `building`).
CREATE TABLE index_state (
    resource_type TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    building      TEXT,
    cursor        BIGINT NOT NULL DEFAULT 0
);

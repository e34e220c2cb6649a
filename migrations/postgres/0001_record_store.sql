-- The FHIR record store: current versions, full history, and the search index.
-- Times are microseconds since the Unix epoch (UTC) so both backends compare them the same way.

CREATE TABLE resources (
    rid           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- internal, never shown; keyset paging order
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    version_id    BIGINT NOT NULL,
    last_updated  BIGINT NOT NULL,
    deleted       BIGINT NOT NULL DEFAULT 0,
    body          TEXT    NOT NULL,                   -- the current version exactly as served
    UNIQUE (resource_type, resource_id)
);
CREATE INDEX resources_type_updated ON resources (resource_type, last_updated, rid);

-- Every version ever written, including deletions (tombstones). Never updated, never deleted.
CREATE TABLE resource_history (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid          BIGINT NOT NULL REFERENCES resources (rid),
    resource_type TEXT   NOT NULL,
    version_id   BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method       TEXT    NOT NULL,                     -- POST | PUT | DELETE
    deleted      BIGINT NOT NULL DEFAULT 0,
    body         TEXT    NOT NULL,
    UNIQUE (rid, version_id)
);
CREATE INDEX resource_history_type ON resource_history (resource_type, seq);
CREATE FUNCTION resource_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'resource history is append-only'; END $$;
CREATE TRIGGER resource_history_append_only BEFORE UPDATE OR DELETE ON resource_history
FOR EACH ROW EXECUTE FUNCTION resource_history_append_only();

CREATE TABLE idx_token (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT NOT NULL, code TEXT NOT NULL, sc TEXT NOT NULL
);
CREATE INDEX idx_token_code ON idx_token (resource_type, param, code);
CREATE INDEX idx_token_sc ON idx_token (resource_type, param, sc);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_string (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,                    -- folded: lower case, no diacritics, đ -> d
    raw TEXT NOT NULL                                   -- as written, for :exact
);
CREATE INDEX idx_string_value ON idx_string (resource_type, param, value);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_date (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    lo BIGINT NOT NULL, hi BIGINT NOT NULL           -- the value's range at its precision
);
CREATE INDEX idx_date_lo ON idx_date (resource_type, param, lo);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_reference (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT NOT NULL, target_id TEXT NOT NULL
);
CREATE INDEX idx_reference_target ON idx_reference (resource_type, param, target_id);
CREATE INDEX idx_reference_rev ON idx_reference (target_type, target_id);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_number (
    rid BIGINT NOT NULL, resource_type TEXT NOT NULL, param TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL
);
CREATE INDEX idx_number_value ON idx_number (resource_type, param, value);
CREATE INDEX idx_number_rid ON idx_number (rid);

-- Identifiers that must name one resource only (e.g. the 12-digit personal ID of a Patient).
CREATE TABLE unique_identifier (
    resource_type TEXT NOT NULL, system TEXT NOT NULL, value TEXT NOT NULL,
    rid BIGINT NOT NULL,
    PRIMARY KEY (resource_type, system, value)
);
CREATE INDEX unique_identifier_rid ON unique_identifier (rid);

-- Monotonic counters (e.g. the facility patient code MA_BN).
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);

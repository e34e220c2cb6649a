-- The audit trail: one row per request that touches patient data. Append-only.
CREATE TABLE audit_log (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,             -- µs since the epoch, server clock
    actor         TEXT    NOT NULL,             -- role:subject, or "anonymous"
    role          TEXT    NOT NULL,
    on_behalf_of  TEXT    NOT NULL DEFAULT '',  -- the service that relayed the call, if any
    action        TEXT    NOT NULL,             -- FHIR interaction: read, vread, search-type, create, ...
    resource_type TEXT    NOT NULL,
    entities      TEXT    NOT NULL,             -- space-separated Type/id touched (for searches: returned)
    client        TEXT    NOT NULL,
    user_agent    TEXT    NOT NULL,
    patients      TEXT    NOT NULL,             -- ' id1 id2 ': the patients whose data was touched
    outcome       BIGINT NOT NULL              -- HTTP status (gRPC codes are mapped to HTTP)
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor);

-- Rows not yet sealed into the chain; the sealer takes them from here.
CREATE TABLE audit_pending (seq BIGINT PRIMARY KEY);

-- The chain: each sealed audit row, in sealing order, with the hash of the one before.
-- Sealing runs behind the requests (a background task), so appending an audit row never
-- waits on a lock over the chain's tail.
CREATE TABLE audit_chain (
    pos       BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL UNIQUE,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE FUNCTION audit_log_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit_pending (seq) VALUES (NEW.seq); RETURN NULL; END $$;
CREATE TRIGGER audit_log_pending AFTER INSERT ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_pending();
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- Clinicians' signing keys (Ed25519), held by the system until a PKI or remote signing
-- service replaces this table behind the same interface.
CREATE TABLE signing_keys (
    practitioner_id TEXT PRIMARY KEY,
    public_key      TEXT NOT NULL,
    secret_key      TEXT NOT NULL,
    created         BIGINT NOT NULL
);

-- Every signature over a resource version.
CREATE TABLE signatures (
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    version_id    BIGINT NOT NULL,
    provenance_id TEXT    NOT NULL,
    signer        TEXT    NOT NULL,
    digest        TEXT    NOT NULL,             -- SHA-256 of the canonical content, hex
    signature     TEXT    NOT NULL,             -- base64
    signed_at     BIGINT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, version_id)
);

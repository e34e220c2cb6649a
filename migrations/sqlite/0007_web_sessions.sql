-- Browser sessions of the web pages, shared by every replica. The cookie holds a random
-- value; only its SHA-256 is stored, so a copy of this table signs nobody in.
CREATE TABLE web_sessions (
    id_hash      TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    patient      TEXT NOT NULL DEFAULT '',
    practitioner TEXT NOT NULL DEFAULT '',
    scopes       TEXT NOT NULL DEFAULT '',       -- SMART scopes, space-separated ('' = none)
    csrf         TEXT NOT NULL,
    created      BIGINT NOT NULL,
    expires      BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires);

-- Sign-ins under way with the identity provider (authorization code with PKCE): the state,
-- the code verifier and where to return; each is used once.
CREATE TABLE web_signins (
    state     TEXT PRIMARY KEY,
    verifier  TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created   BIGINT NOT NULL
);

-- The outbox (see the PostgreSQL migration); SQLite's single writer serialises claims.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT    NOT NULL UNIQUE,
    topic         TEXT    NOT NULL,
    due           INTEGER NOT NULL,
    payload       TEXT    NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER,
    sent_at       INTEGER,
    outcome       TEXT
);
CREATE INDEX outbox_due ON outbox (due) WHERE sent_at IS NULL;

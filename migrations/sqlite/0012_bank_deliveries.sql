-- The bank feeds' deliveries as received (see the PostgreSQL migration). Append-only.
CREATE TABLE bank_deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    provider       TEXT    NOT NULL,
    transaction_id TEXT,
    received_at    INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    raw            BLOB    NOT NULL
);
CREATE INDEX bank_deliveries_transaction ON bank_deliveries (provider, transaction_id);
CREATE TRIGGER bank_deliveries_no_update BEFORE UPDATE ON bank_deliveries
BEGIN SELECT RAISE(ABORT, 'bank deliveries are append-only'); END;
CREATE TRIGGER bank_deliveries_no_delete BEFORE DELETE ON bank_deliveries
BEGIN SELECT RAISE(ABORT, 'bank deliveries are append-only'); END;

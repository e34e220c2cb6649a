-- The video visit's signalling (see the PostgreSQL migration). One process serves SQLite, so
-- new rows are delivered in process.
CREATE TABLE visit_signals (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    room   TEXT    NOT NULL,
    sender TEXT    NOT NULL,
    role   TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    body   TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX visit_signals_room ON visit_signals (room, id);
CREATE INDEX visit_signals_at ON visit_signals (at);

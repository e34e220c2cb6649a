-- The video visit's signalling: what the participants of a visit say to each other through the
-- server (presence, admission, WebRTC offers, answers and ICE candidates, chat), one row each.
-- Every replica hears of a new row by NOTIFY (its id) and delivers it to the participants
-- connected to it, so the two sides of a call may be on different replicas. Rows older than a
-- day are pruned; nothing of the media itself passes here.
CREATE TABLE visit_signals (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room   TEXT   NOT NULL,
    sender TEXT   NOT NULL,  -- the connection that sent it
    role   TEXT   NOT NULL,  -- patient | practitioner | server
    kind   TEXT   NOT NULL,
    body   TEXT   NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX visit_signals_room ON visit_signals (room, id);
CREATE INDEX visit_signals_at ON visit_signals (at);

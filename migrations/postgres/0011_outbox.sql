-- The outbox: messages a write decided to send later (a visit's reminders), written in the
-- same transaction as the write, so none is lost and none is made for a write that rolled
-- back. A sender claims due rows for a lease (FOR UPDATE SKIP LOCKED: replicas never claim the
-- same row), sends, and marks them sent; a row whose claimer died is claimed again when its
-- lease runs out. `key` names each message once.
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key           TEXT   NOT NULL UNIQUE,
    topic         TEXT   NOT NULL,
    due           BIGINT NOT NULL,
    payload       TEXT   NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    sent_at       BIGINT,
    outcome       TEXT
);
CREATE INDEX outbox_due ON outbox (due) WHERE sent_at IS NULL;

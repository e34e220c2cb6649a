-- The bank feeds' deliveries as received: every delivery whose signature verified, its raw
-- bytes kept before it is answered (in the same transaction as the ledger's credit, when there
-- is one), with the provider, its transaction id when the body names one, and what became of
-- it. A delivery that fails verification is not kept here (its audit line is all that
-- remains of it). Append-only: the database refuses UPDATE and DELETE.
CREATE TABLE bank_deliveries (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider       TEXT   NOT NULL,  -- sepay | casso | payos | vnpay
    transaction_id TEXT,             -- the provider's id of the transaction, when the body names one
    received_at    BIGINT NOT NULL,  -- µs since the epoch
    outcome        TEXT   NOT NULL,  -- paid | partial | overpaid | unmatched | duplicate | ignored | not-paid | malformed | refused:<code>
    raw            BYTEA  NOT NULL
);
CREATE INDEX bank_deliveries_transaction ON bank_deliveries (provider, transaction_id);
CREATE FUNCTION bank_deliveries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bank deliveries are append-only'; END $$;
CREATE TRIGGER bank_deliveries_append_only BEFORE UPDATE OR DELETE ON bank_deliveries
FOR EACH ROW EXECUTE FUNCTION bank_deliveries_append_only();

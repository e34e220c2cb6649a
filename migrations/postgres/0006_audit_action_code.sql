-- The AuditEvent action code (C, R, U, D, E) of every record, so that a read is a read through
-- every door (a gRPC method name says nothing of it). Older records keep '' and are read by
-- their interaction name.
ALTER TABLE audit_log ADD COLUMN action_code TEXT NOT NULL DEFAULT '';

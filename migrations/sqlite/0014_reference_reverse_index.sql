-- What points at a resource, by the pointing type and parameter (see the PostgreSQL migration).
DROP INDEX idx_reference_rev;
CREATE INDEX idx_reference_rev ON idx_reference (target_type, target_id, resource_type, param, rid);

-- What points at a resource, by the pointing type and parameter: a reverse chain
-- (`_has:Observation:patient:...`) and a `_revinclude` read it without visiting the table.
DROP INDEX idx_reference_rev;
CREATE INDEX idx_reference_rev ON idx_reference (target_type, target_id, resource_type, param) INCLUDE (rid);

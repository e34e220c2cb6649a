-- `gt`/`ge`/`sa` date searches bound the upper end of the range.
CREATE INDEX idx_date_hi ON idx_date (resource_type, param, hi);

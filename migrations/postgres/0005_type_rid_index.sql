-- Unfiltered searches page through a type in row-id order without sorting it.
CREATE INDEX resources_type_rid ON resources (resource_type, rid);

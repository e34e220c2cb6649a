-- Counters that every create of a type needs (the facility patient code) are sequences on
-- PostgreSQL: a counters row would be a lock that serialises all concurrent creates.
CREATE SEQUENCE counter_patient_internal_id;

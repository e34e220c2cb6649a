-- SQLite writes are serialised anyway; its counters stay in the counters table.
SELECT 1;

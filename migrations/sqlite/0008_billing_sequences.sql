-- SQLite writes are serialised anyway; billing's numbers stay in the counters table.
SELECT 1;

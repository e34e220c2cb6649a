-- Billing's numbers (bill numbers, receipt numbers) are sequences on PostgreSQL: a counters
-- row would serialise every invoice and every credited payment behind one lock. The year in
-- the number is the year of issue; the count runs on across years.
CREATE SEQUENCE counter_bill_number;
CREATE SEQUENCE counter_receipt_number;

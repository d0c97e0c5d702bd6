-- Undo 0003: back to the single-column search indexes of 0002.
CREATE INDEX orders_track_number_idx ON orders (track_number);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
DROP INDEX orders_track_number_id_idx;
DROP INDEX orders_customer_id_id_idx;

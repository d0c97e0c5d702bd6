-- Undo 0002.
DROP INDEX orders_customer_id_idx;
DROP INDEX orders_track_number_idx;

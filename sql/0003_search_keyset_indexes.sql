-- The UI's search pages by keyset, newest first (internal/store/search.py): "track_number = $1 AND
-- id < $2 ORDER BY id DESC LIMIT n". A single-column index finds the 10,000 orders of a shared track
-- number but not in id order, so each page sorted all of them; (column, id) serves the page as a
-- backward range scan that stops after n rows (plans in docs/search.md). The composite indexes
-- replace the single-column ones: the write path keeps maintaining two search indexes, not four.
-- depends: 0002_search_indexes

CREATE INDEX orders_track_number_id_idx ON orders (track_number, id);
CREATE INDEX orders_customer_id_id_idx ON orders (customer_id, id);
DROP INDEX orders_track_number_idx;
DROP INDEX orders_customer_id_idx;

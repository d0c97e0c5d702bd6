-- Indexes for the UI's search: track_number and customer_id by equality (order_uid by prefix is served
-- by the unique index, whose "C" collation makes LIKE 'abc%' a range scan).
-- depends: 0001_orders_schema

CREATE INDEX orders_track_number_idx ON orders (track_number);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);

-- Indexes for the UI's search: order_uid by prefix, track_number and customer_id by equality.
-- text_pattern_ops makes "order_uid LIKE 'abc%'" an index range scan whatever the database collation.
-- depends: 0001_orders_schema

CREATE INDEX orders_uid_prefix_idx ON orders (order_uid text_pattern_ops);
CREATE INDEX orders_track_number_idx ON orders (track_number);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);

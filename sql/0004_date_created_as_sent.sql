-- date_created as the producer sent it: the API serves the message's shape, and timestamptz keeps
-- only the instant (no offset, microseconds at most). The text is kept next to the instant, which
-- stays the column that orders, compares and indexes; the reader serves the text.
-- Orders stored before this migration get the text the API served for them until now: the instant
-- in UTC with "Z", microseconds only when present (the former reader's expression).
-- depends: 0003_search_keyset_indexes

ALTER TABLE orders ADD COLUMN date_created_text TEXT;
UPDATE orders
   SET date_created_text = to_char(date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
       || CASE WHEN date_part('microseconds', date_created)::bigint % 1000000 <> 0
               THEN to_char(date_created AT TIME ZONE 'UTC', '.US') ELSE '' END
       || 'Z';
ALTER TABLE orders ALTER COLUMN date_created_text SET NOT NULL;

-- Undo 0004: the reader of 0003 serves date_created as the UTC instant again.
ALTER TABLE orders DROP COLUMN date_created_text;

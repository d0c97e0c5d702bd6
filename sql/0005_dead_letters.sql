-- The read model of the dead-letter topic (internal/store/dead_letters.py): one row per refused
-- message, keyed by where it came from, so that a letter sent twice (a crash between the broker's
-- acknowledgement and the commit) is one row. The operator's console (/dlq) counts and lists from
-- here, never by reading the whole topic; a letter's own page fetches that one letter from Kafka by
-- its dead-letter partition and offset. Texts are bounded by the writer; the value is not kept.
-- dead_letter_groups holds the per-group counts, updated in the same statement as the rows, so the
-- unfiltered console page reads a few dozen rows whatever the topic holds.
-- depends: 0004_date_created_as_sent

CREATE TABLE dead_letters (
    origin_topic     text        NOT NULL,
    origin_partition integer     NOT NULL,
    origin_offset    bigint      NOT NULL,
    dlq_topic        text        NOT NULL,
    dlq_partition    integer     NOT NULL,
    dlq_offset       bigint      NOT NULL,
    reason           text        NOT NULL,
    group_key        text        NOT NULL,
    order_uid        text,
    failed_at        timestamptz NOT NULL,
    error            text        NOT NULL,
    is_stub          boolean     NOT NULL,
    value_bytes      integer     NOT NULL,
    PRIMARY KEY (origin_topic, origin_partition, origin_offset)
);
-- Newest first, keyset on (failed_at, origin key): all letters, one group's, one reason's.
CREATE INDEX dead_letters_failed_idx ON dead_letters (failed_at, origin_topic, origin_partition, origin_offset);
CREATE INDEX dead_letters_group_idx
    ON dead_letters (group_key, failed_at, origin_topic, origin_partition, origin_offset);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, failed_at);

CREATE TABLE dead_letter_groups (
    group_key        text        PRIMARY KEY,
    reason           text        NOT NULL,
    letters          bigint      NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    sample_topic     text        NOT NULL,
    sample_partition integer     NOT NULL,
    sample_offset    bigint      NOT NULL,
    sample_error     text        NOT NULL
);

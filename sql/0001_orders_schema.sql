-- Normalized storage of L0 orders: one row per order, its delivery and payment (1:1), its items (1:N).
-- Widths follow real data: ids and money are BIGINT (payment_dt is unix seconds), text is unbounded
-- TEXT (the validator bounds lengths; docs/validation.md).
-- depends:

CREATE TABLE orders (
    id                 BIGSERIAL PRIMARY KEY,
    -- ASCII letters and digits only (the validator checks): the "C" collation compares bytes, so the
    -- unique index also serves prefix search (LIKE 'abc%') without a second index to maintain.
    order_uid          TEXT        NOT NULL COLLATE "C",
    track_number       TEXT        NOT NULL,
    entry              TEXT        NOT NULL,
    locale             TEXT        NOT NULL,
    internal_signature TEXT        NOT NULL,
    customer_id        TEXT        NOT NULL,
    delivery_service   TEXT        NOT NULL,
    shardkey           TEXT        NOT NULL,
    sm_id              BIGINT      NOT NULL,
    date_created       TIMESTAMPTZ NOT NULL,
    oof_shard          TEXT        NOT NULL,
    -- sha256 of the order's canonical JSON: tells a harmless re-delivery (same hash) from a conflict.
    content_hash       BYTEA       NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_order_uid_key UNIQUE (order_uid)
);

-- "The latest N orders" (cache warm-up, the UI's recent list) are the N highest ids: ids are taken
-- from the sequence in insertion order, so the primary key index serves that query backwards, and the
-- write path maintains no extra index for it.

CREATE TABLE deliveries (
    order_id BIGINT PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    phone    TEXT NOT NULL,
    zip      TEXT NOT NULL,
    city     TEXT NOT NULL,
    address  TEXT NOT NULL,
    region   TEXT NOT NULL,
    email    TEXT NOT NULL
);

CREATE TABLE payments (
    order_id      BIGINT PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    transaction   TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    currency      TEXT   NOT NULL,
    provider      TEXT   NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    payment_dt    BIGINT NOT NULL CHECK (payment_dt > 0),
    bank          TEXT   NOT NULL,
    delivery_cost BIGINT NOT NULL CHECK (delivery_cost >= 0),
    goods_total   BIGINT NOT NULL CHECK (goods_total > 0),
    custom_fee    BIGINT NOT NULL CHECK (custom_fee >= 0)
);

-- The primary key (order_id, position) also serves "items of an order" and keeps the message's order.
CREATE TABLE items (
    order_id     BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    chrt_id      BIGINT  NOT NULL,
    track_number TEXT    NOT NULL,
    price        BIGINT  NOT NULL CHECK (price >= 0),
    rid          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    sale         INTEGER NOT NULL CHECK (sale BETWEEN 0 AND 100),
    size         TEXT    NOT NULL,
    total_price  BIGINT  NOT NULL CHECK (total_price >= 0),
    nm_id        BIGINT  NOT NULL,
    brand        TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);

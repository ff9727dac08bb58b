-- Where products are kept, and how many of each. Quantities can never go negative: the check
-- constraint is the last line of defence behind transfer_stock() (V4).

CREATE TABLE warehouses (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code  text NOT NULL UNIQUE CHECK (code ~ '^[A-Z]{3}[0-9]?$'),
    city  text NOT NULL
);

CREATE TABLE stock (
    warehouse_id  bigint  NOT NULL REFERENCES warehouses (id) ON DELETE RESTRICT,
    product_id    bigint  NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    quantity      integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warehouse_id, product_id)
);

-- "Which warehouses hold product X?" is the common lookup; the primary key serves the reverse.
CREATE INDEX stock_product_idx ON stock (product_id) INCLUDE (quantity);

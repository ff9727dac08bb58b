-- Orders and their lines. An order's lines go with it (ON DELETE CASCADE); a customer or product
-- with orders cannot be deleted (RESTRICT), so history is never silently lost.

CREATE TABLE orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    placed_at    timestamptz NOT NULL DEFAULT now(),
    shipped_at   timestamptz,
    CONSTRAINT shipped_orders_have_a_date CHECK ((status = 'shipped') = (shipped_at IS NOT NULL))
);

CREATE TABLE order_items (
    order_id          bigint  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id        bigint  NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_cents  integer NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- A customer's recent orders, newest first: the query behind every "my orders" page.
CREATE INDEX orders_customer_recent_idx ON orders (customer_id, placed_at DESC);

CREATE VIEW order_totals AS
SELECT o.id AS order_id, o.customer_id, o.status,
       coalesce(sum(i.quantity * i.unit_price_cents::bigint), 0) AS total_cents
FROM orders o
LEFT JOIN order_items i ON i.order_id = o.id
GROUP BY o.id;

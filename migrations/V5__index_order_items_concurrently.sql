-- dbkeeper:no-transaction
-- CREATE INDEX CONCURRENTLY does not block writes to a busy table, but it cannot run inside a
-- transaction, hence the directive above. dbkeeper records this migration as in progress before
-- it starts; if it is interrupted, `dbkeeper migrate status` shows it dirty (and PostgreSQL may
-- leave an INVALID index behind, which `DROP INDEX CONCURRENTLY` removes).

-- "Which orders contain product X?" (sales per product, recalls).
CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_product_idx ON order_items (product_id);

-- Only pending orders are polled by the fulfilment worker; a partial index keeps it tiny.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_pending_idx ON orders (placed_at)
    WHERE status = 'pending';

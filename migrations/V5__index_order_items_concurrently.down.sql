-- dbkeeper:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS orders_pending_idx;
DROP INDEX CONCURRENTLY IF EXISTS order_items_product_idx;

DROP VIEW order_totals;
DROP TABLE order_items;
DROP TABLE orders;

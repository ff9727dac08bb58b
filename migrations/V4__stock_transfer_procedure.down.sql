DROP PROCEDURE transfer_stock(bigint, bigint, bigint, integer);
DROP TABLE stock_movements;

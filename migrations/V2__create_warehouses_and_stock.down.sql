DROP TABLE stock;
DROP TABLE warehouses;

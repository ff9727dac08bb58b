-- Transaction handling: moving stock between warehouses is all-or-nothing. The procedure locks
-- both stock rows in a fixed order (lowest warehouse id first) so two opposite transfers cannot
-- deadlock, checks availability, and raises on any problem, which rolls back the caller's whole
-- transaction: the source is never debited without the destination being credited.

CREATE TABLE stock_movements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id      bigint  NOT NULL REFERENCES products (id),
    from_warehouse  bigint  NOT NULL REFERENCES warehouses (id),
    to_warehouse    bigint  NOT NULL REFERENCES warehouses (id),
    quantity        integer NOT NULL CHECK (quantity > 0),
    moved_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (from_warehouse <> to_warehouse)
);

CREATE PROCEDURE transfer_stock(p_product bigint, p_from bigint, p_to bigint, p_quantity integer)
LANGUAGE plpgsql
AS $$
DECLARE
    available integer;
BEGIN
    IF p_quantity <= 0 THEN
        RAISE EXCEPTION 'transfer quantity must be positive, got %', p_quantity;
    END IF;
    IF p_from = p_to THEN
        RAISE EXCEPTION 'source and destination warehouse are the same (%)', p_from;
    END IF;

    -- Lock both rows, lowest warehouse first, before reading anything.
    PERFORM 1 FROM stock
     WHERE product_id = p_product AND warehouse_id IN (p_from, p_to)
     ORDER BY warehouse_id
       FOR UPDATE;

    SELECT quantity INTO available
      FROM stock WHERE product_id = p_product AND warehouse_id = p_from;
    IF available IS NULL OR available < p_quantity THEN
        RAISE EXCEPTION 'warehouse % has % of product %, cannot move %',
            p_from, coalesce(available, 0), p_product, p_quantity
            USING ERRCODE = 'check_violation';
    END IF;

    UPDATE stock SET quantity = quantity - p_quantity, updated_at = now()
     WHERE product_id = p_product AND warehouse_id = p_from;
    INSERT INTO stock (warehouse_id, product_id, quantity)
    VALUES (p_to, p_product, p_quantity)
    ON CONFLICT (warehouse_id, product_id)
    DO UPDATE SET quantity = stock.quantity + EXCLUDED.quantity, updated_at = now();

    INSERT INTO stock_movements (product_id, from_warehouse, to_warehouse, quantity)
    VALUES (p_product, p_from, p_to, p_quantity);
END;
$$;

COMMENT ON PROCEDURE transfer_stock(bigint, bigint, bigint, integer) IS
    'Moves stock between warehouses atomically; raises (rolling back) when stock is short.';

-- Hand-designed indexes for the shop workload (the reference configuration).
-- customer_recent_orders, customer_order_lines: the unindexed foreign key, then the ORDER BY column
CREATE INDEX hand_orders_customer_created ON orders (customer_id, created_at);
-- country_orders_month: equality, then the range
CREATE INDEX hand_orders_country_created ON orders (shipping_country, created_at);
-- login_by_email: the expression the statement compares
CREATE INDEX hand_customers_lower_email ON customers (lower(email));
-- product_name_prefix: the database collation is C, so a plain btree serves LIKE 'prefix%'
CREATE INDEX hand_products_name ON products (name);
-- products_by_attrs: containment only, so the smaller jsonb_path_ops operator class
CREATE INDEX hand_products_attrs ON products USING gin (attrs jsonb_path_ops);
-- customer_order_lines: the inner side of the join
CREATE INDEX hand_order_items_order ON order_items (order_id);
-- product_sales_since
CREATE INDEX hand_order_items_product ON order_items (product_id);
-- refund_queue: 0.25% of orders; a partial index holds only them, already in created_at order
CREATE INDEX hand_orders_refunds ON orders (created_at) WHERE status = 'refund_requested';

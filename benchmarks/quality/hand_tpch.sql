-- Hand-designed indexes for the TPC-H workload (the reference configuration).
-- q17/q20 lookups and q19's nested loop from part: part key first, then supplier and ship date
CREATE INDEX hand_lineitem_part_supp_ship ON lineitem (l_partkey, l_suppkey, l_shipdate);
-- customer_recent_orders and customer_order_lines: the customer key, then the ORDER BY column
CREATE INDEX hand_orders_cust_date ON orders (o_custkey, o_orderdate);
-- parts_by_name_prefix: the database collation is C, so a plain btree serves LIKE 'prefix%'
CREATE INDEX hand_part_name ON part (p_name);
-- q4/q10 (three months of orders) and q14 (one month of lineitem): worth trying, may not pay
CREATE INDEX hand_orders_orderdate ON orders (o_orderdate);
CREATE INDEX hand_lineitem_shipdate ON lineitem (l_shipdate);

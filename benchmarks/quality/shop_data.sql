-- Data of the shop workload, generated server-side; setseed makes every run load the same rows.
-- Skew as in real shops: a few countries hold most customers and orders, a few customers order a
-- lot (power(random(), 2)), a few products sell most (power(random(), 3)), almost every order is
-- delivered and refund requests are rare (0.25%). Orders are inserted in time order, so created_at
-- follows the physical order, as it does in a table that only ever grows.
SELECT setseed(0.42);

INSERT INTO customers (email, full_name, country, tier, created_at)
SELECT 'Customer.' || g || '@' || (ARRAY['Example.com', 'Mail.test', 'Shop.test'])[1 + g % 3],
       (ARRAY['Ana', 'Bao', 'Chen', 'Dara', 'Eli', 'Femi', 'Gus', 'Hana'])[1 + g % 8] || ' ' ||
       (ARRAY['Nguyen', 'Smith', 'Muller', 'Rossi', 'Tanaka', 'Silva', 'Kumar', 'Dubois'])[1 + (g / 8) % 8],
       (ARRAY['US', 'DE', 'GB', 'FR', 'VN', 'JP', 'BR', 'IN', 'CA', 'AU',
              'ES', 'IT', 'NL', 'SE', 'PL', 'MX', 'KR', 'SG', 'ZA', 'NZ'])[1 + floor(20 * power(random(), 2.5))::int],
       CASE WHEN random() < 0.02 THEN 'vip' WHEN random() < 0.10 THEN 'plus' ELSE 'standard' END,
       timestamptz '2023-01-01 00:00+00' + (g / 150000.0) * interval '1095 days'
FROM generate_series(1, 150000) AS g;

INSERT INTO categories (id, parent_id, name, slug)
SELECT g, CASE WHEN g <= 20 THEN NULL ELSE 1 + g % 20 END, 'Category ' || g, 'category-' || g
FROM generate_series(1, 200) AS g;

INSERT INTO products (sku, name, category_id, price_cents, attrs, active, created_at)
SELECT 'SKU-' || lpad(g::text, 7, '0'),
       (ARRAY['Smart', 'Classic', 'Compact', 'Deluxe', 'Eco', 'Pro', 'Mini', 'Ultra', 'Vintage', 'Travel',
              'Kids', 'Outdoor', 'Urban', 'Premium', 'Basic', 'Wireless', 'Organic', 'Heavy', 'Soft', 'Rapid',
              'Silent', 'Solar', 'Family', 'Studio', 'Sport', 'Nordic', 'Retro', 'Linen', 'Steel', 'Bamboo'])[1 + g % 30]
       || ' ' ||
       (ARRAY['Lamp', 'Chair', 'Kettle', 'Backpack', 'Speaker', 'Jacket', 'Blender', 'Desk', 'Mug', 'Tent',
              'Watch', 'Pillow', 'Drone', 'Camera', 'Shoe', 'Bottle', 'Router', 'Towel', 'Sofa', 'Helmet',
              'Glove', 'Scarf', 'Printer', 'Heater', 'Fan', 'Cable', 'Mirror', 'Rug', 'Vase', 'Clock',
              'Knife', 'Pan', 'Grill', 'Bike', 'Ball', 'Mat', 'Hat', 'Bag', 'Toy', 'Book'])[1 + (g / 30) % 40]
       || ' ' || g,
       1 + (g % 200),
       (500 + random() * 50000)::int,
       jsonb_build_object(
           'brand', 'brand-' || (1 + floor(400 * power(random(), 2)))::int,
           'color', (ARRAY['black', 'white', 'red', 'blue', 'green', 'grey', 'yellow', 'pink',
                           'orange', 'purple', 'brown', 'beige'])[1 + floor(12 * random())::int],
           'size', (ARRAY['S', 'M', 'L', 'XL'])[1 + floor(4 * random())::int],
           'warranty_months', (ARRAY[0, 12, 24])[1 + floor(3 * random())::int]),
       random() < 0.95,
       timestamptz '2022-06-01 00:00+00' + random() * interval '900 days'
FROM generate_series(1, 100000) AS g;

INSERT INTO orders (customer_id, status, shipping_country, total_cents, created_at, note)
SELECT 1 + floor(150000 * power(random(), 2))::bigint,
       CASE WHEN r < 0.0025 THEN 'refund_requested' WHEN r < 0.0225 THEN 'cancelled'
            WHEN r < 0.0525 THEN 'returned' WHEN r < 0.0725 THEN 'pending'
            WHEN r < 0.1225 THEN 'shipped' ELSE 'delivered' END,
       (ARRAY['US', 'DE', 'GB', 'FR', 'VN', 'JP', 'BR', 'IN', 'CA', 'AU',
              'ES', 'IT', 'NL', 'SE', 'PL', 'MX', 'KR', 'SG', 'ZA', 'NZ'])[1 + floor(20 * power(random(), 2.5))::int],
       (1000 + random() * 30000)::int,
       timestamptz '2023-01-01 00:00+00' + (g / 600000.0) * interval '1095 days' + random() * interval '6 hours',
       CASE WHEN random() < 0.1 THEN 'leave at the door' END
FROM (SELECT g, random() AS r FROM generate_series(1, 600000) AS g) s;

INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
SELECT o.id, 1 + floor(100000 * power(random(), 3))::bigint, 1 + floor(4 * random())::int,
       (500 + random() * 20000)::int
FROM orders o, generate_series(1, 1 + (o.id % 4)::int) AS line;

-- The quality suite's second workload: a small e-commerce shop (customers, categories, products,
-- orders, order_items). Only primary keys and unique constraints exist, as on the day the ORM
-- created the tables: the foreign keys are not indexed, which is PostgreSQL's default and the most
-- common index an application misses.
DROP TABLE IF EXISTS order_items, orders, products, categories, customers CASCADE;

CREATE TABLE customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    full_name  text NOT NULL,
    country    text NOT NULL,
    tier       text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE categories (
    id        int PRIMARY KEY,
    parent_id int REFERENCES categories (id),
    name      text NOT NULL,
    slug      text NOT NULL UNIQUE
);

CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category_id int  NOT NULL REFERENCES categories (id),
    price_cents int  NOT NULL,
    attrs       jsonb NOT NULL,
    active      boolean NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE orders (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id      bigint NOT NULL REFERENCES customers (id),
    status           text   NOT NULL,
    shipping_country text   NOT NULL,
    total_cents      int    NOT NULL,
    created_at       timestamptz NOT NULL,
    note             text
);

CREATE TABLE order_items (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         bigint NOT NULL REFERENCES orders (id),
    product_id       bigint NOT NULL REFERENCES products (id),
    quantity         int    NOT NULL,
    unit_price_cents int    NOT NULL
);

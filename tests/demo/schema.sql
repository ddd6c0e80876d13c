-- The demo's shared database.  Owners: prices -> pricing, stock -> inventory,
-- orders -> orders, payments -> billing.  Nothing enforces that.
CREATE TABLE prices (sku text PRIMARY KEY, cents int NOT NULL);
CREATE TABLE stock (sku text PRIMARY KEY, qty int NOT NULL, reserved int NOT NULL DEFAULT 0);
CREATE TABLE orders (id bigserial PRIMARY KEY, sku text NOT NULL, qty int NOT NULL,
                     cents int NOT NULL, status text NOT NULL DEFAULT 'new',
                     created timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_sku ON orders (sku);
CREATE TABLE payments (id bigserial PRIMARY KEY, order_id bigint NOT NULL, cents int NOT NULL,
                       created timestamptz NOT NULL DEFAULT now());
INSERT INTO prices SELECT 'sku-' || i, 250 * i FROM generate_series(1, 5) i;
INSERT INTO stock SELECT 'sku-' || i, 1000, 0 FROM generate_series(1, 5) i;

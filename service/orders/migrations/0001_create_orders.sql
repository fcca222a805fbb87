-- The orders themselves. Times are UTC (the service sets time_zone = '+00:00' on every connection);
-- money is an exact DECIMAL with its ISO 4217 currency, never a float.
CREATE TABLE IF NOT EXISTS orders (
  id             BIGINT UNSIGNED   NOT NULL AUTO_INCREMENT,
  customer_id    BIGINT UNSIGNED   NOT NULL,
  customer_name  VARCHAR(100)      NOT NULL,
  customer_email VARCHAR(254)      NOT NULL,
  status         ENUM('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded') NOT NULL,
  amount         DECIMAL(12, 2)    NOT NULL,
  currency       CHAR(3)           NOT NULL,
  item_count     SMALLINT UNSIGNED NOT NULL,
  created_at     DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at     DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY orders_customer (customer_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

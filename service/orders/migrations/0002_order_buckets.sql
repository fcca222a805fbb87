-- Row counts per block of 4096 ids, kept exact by triggers whoever writes the orders table. They
-- make deep pages and totals cheap: the page holding rank r is found by summing a few thousand
-- block counts instead of skipping r rows (OFFSET) or counting the whole table (COUNT(*)).
-- The block width (4096) is BUCKET_WIDTH in service/orders/repository.py; a test checks they agree.
CREATE TABLE IF NOT EXISTS order_buckets (
  bucket    BIGINT UNSIGNED NOT NULL,
  row_count BIGINT          NOT NULL,
  PRIMARY KEY (bucket)
) ENGINE = InnoDB;

DROP TRIGGER IF EXISTS orders_count_insert;
-- A bulk writer that counts its own rows in the same transaction (the seed) sets the session
-- variable @orders_rows_counted_by_writer and skips this per-row work, which doubles insert cost.
CREATE TRIGGER orders_count_insert AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO order_buckets (bucket, row_count) SELECT NEW.id DIV 4096, 1 FROM DUAL
  WHERE @orders_rows_counted_by_writer IS NULL
  ON DUPLICATE KEY UPDATE row_count = row_count + 1;

DROP TRIGGER IF EXISTS orders_count_delete;
CREATE TRIGGER orders_count_delete AFTER DELETE ON orders FOR EACH ROW
  UPDATE order_buckets SET row_count = row_count - 1 WHERE bucket = OLD.id DIV 4096;

DROP TRIGGER IF EXISTS orders_count_move;
CREATE TRIGGER orders_count_move AFTER UPDATE ON orders FOR EACH ROW
  INSERT INTO order_buckets (bucket, row_count)
  SELECT moved.bucket, moved.delta
  FROM (SELECT OLD.id DIV 4096 AS bucket, -1 AS delta UNION ALL SELECT NEW.id DIV 4096, 1) AS moved
  WHERE NEW.id <> OLD.id
  ON DUPLICATE KEY UPDATE row_count = row_count + moved.delta;

-- Rows that existed before the triggers: count them once.
INSERT INTO order_buckets (bucket, row_count)
  SELECT counted.bucket, counted.n
  FROM (SELECT id DIV 4096 AS bucket, COUNT(*) AS n FROM orders GROUP BY id DIV 4096) AS counted
  ON DUPLICATE KEY UPDATE row_count = counted.n;

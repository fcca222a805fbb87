-- 0004's AFTER UPDATE trigger counted every id change it was told of, but MariaDB fires AFTER
-- UPDATE for a row of `UPDATE IGNORE ... SET id = id + 100000` whose new id collided with another
-- row's and was left where it was (reproduced on 10.11: the count moved, the row did not). A row
-- that really moved has left its old id: the guard looks it up (the primary key, one lookup per
-- moved row only, since it runs behind NEW.id <> OLD.id) and counts only the moves that happened.
-- No other row can hold OLD.id yet: this row held it until its move, and a later row's move into
-- it fires after this trigger.
DROP TRIGGER IF EXISTS orders_count_move;
CREATE TRIGGER orders_count_move AFTER UPDATE ON orders FOR EACH ROW
  IF NEW.id <> OLD.id AND NOT EXISTS (SELECT 1 FROM orders WHERE id = OLD.id) THEN
    INSERT INTO order_buckets (bucket, row_count)
    SELECT moved.bucket, moved.delta
    FROM (SELECT OLD.id DIV 4096 AS bucket, -1 AS delta UNION ALL SELECT NEW.id DIV 4096, 1) AS moved
    ON DUPLICATE KEY UPDATE row_count = row_count + moved.delta; END IF;

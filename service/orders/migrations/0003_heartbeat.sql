-- The invalidator's heartbeat (one row per invalidator server id): rewritten about twice a second,
-- it comes back through the binlog and proves every commit before it has been applied.
CREATE TABLE IF NOT EXISTS heartbeat (
  invalidator BIGINT UNSIGNED NOT NULL,
  seq         BIGINT UNSIGNED NOT NULL,
  written_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (invalidator)
) ENGINE = InnoDB;

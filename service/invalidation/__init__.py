"""Change capture from the MySQL binlog, turned into cache invalidations."""

-- Step 1: Tandem's objects in a MySQL / MariaDB database: the change table
-- the capture triggers write into, the mapping table of the records the
-- agent created here, and the version row's table. MySQL commits each DDL
-- statement by itself, so a step that fails half-way is run again in full
-- by the next install-triggers: every statement of a step must change
-- nothing when it already ran (see sql/README.md).
CREATE TABLE IF NOT EXISTS tandem_changes (
  seq BIGINT AUTO_INCREMENT PRIMARY KEY,
  table_name VARCHAR(192) NOT NULL,
  op CHAR(1) NOT NULL,
  pk TEXT NOT NULL,
  captured_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
-- ;;
CREATE TABLE IF NOT EXISTS tandem_id_map (
  pair VARCHAR(128) NOT NULL,
  source_key VARCHAR(300) NOT NULL,
  target_key VARCHAR(300) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (pair, source_key),
  UNIQUE KEY tandem_id_map_target (pair, target_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
-- ;;
CREATE TABLE IF NOT EXISTS tandem_version (
  id TINYINT PRIMARY KEY,
  version INT NOT NULL
) ENGINE=InnoDB

-- Records that the step numbered {{version}} ran. Not in the step's
-- transaction (MySQL commits DDL by itself): written after the step, so a
-- step that failed is run again. Never lowers the number.
INSERT INTO tandem_version (id, version) VALUES (1, {{version}})
  ON DUPLICATE KEY UPDATE version = GREATEST(version, {{version}})

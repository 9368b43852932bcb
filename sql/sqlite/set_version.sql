-- Records that the step numbered {{version}} ran, in its transaction.
-- Never lowers the number.
INSERT INTO tandem_version (id, version) VALUES (1, {{version}})
  ON CONFLICT (id) DO UPDATE SET version = excluded.version
  WHERE version < excluded.version

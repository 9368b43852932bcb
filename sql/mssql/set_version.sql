-- Records that the step numbered {{version}} ran, in its transaction.
-- Never lowers the number.
IF EXISTS (SELECT 1 FROM tandem.version WHERE id = 1)
BEGIN
    UPDATE tandem.version SET version = {{version}} WHERE id = 1 AND version < {{version}};
END
ELSE
BEGIN
    INSERT INTO tandem.version (id, version) VALUES (1, {{version}});
END

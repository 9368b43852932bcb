-- Capture triggers of one table, one per operation. Each writes the table's
-- name, the operation and the key (a JSON array) into tandem_changes, unless
-- the write is the agent's own (a row in tandem_applying). An UPDATE that
-- changes the key is written as a delete of the old key and an insert of the
-- new one. The placeholders are filled with names already quoted. SQLite
-- keeps each CREATE TRIGGER as written: install compares the kept text with
-- this one to decide whether a trigger is up to date.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}} FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM tandem_applying)
BEGIN
  INSERT INTO tandem_changes (table_name, op, pk)
    VALUES ({{table_literal}}, 'I', json_array({{new_key}}));
END
-- ;;
CREATE TRIGGER {{update_trigger}} AFTER UPDATE ON {{table}} FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM tandem_applying)
BEGIN
  INSERT INTO tandem_changes (table_name, op, pk)
    SELECT {{table_literal}}, 'D', json_array({{old_key}})
    WHERE NOT {{key_unchanged}};
  INSERT INTO tandem_changes (table_name, op, pk)
    SELECT {{table_literal}}, CASE WHEN {{key_unchanged}} THEN 'U' ELSE 'I' END,
           json_array({{new_key}});
END
-- ;;
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}} FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM tandem_applying)
BEGIN
  INSERT INTO tandem_changes (table_name, op, pk)
    VALUES ({{table_literal}}, 'D', json_array({{old_key}}));
END

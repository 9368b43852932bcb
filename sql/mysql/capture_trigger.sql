-- Capture triggers of one table, one per operation. Each writes the table's
-- name, the operation and the key (a JSON array) into tandem_changes, unless
-- the session is the agent's own (@tandem_applying set). An UPDATE that
-- changes the key is written as a delete of the old key and an insert of the
-- new one.
{{create_trigger}} {{insert_trigger}} AFTER INSERT ON {{table}} FOR EACH ROW
BEGIN
  IF @tandem_applying IS NULL THEN
    INSERT INTO tandem_changes (table_name, op, pk)
      VALUES ({{table_literal}}, 'I', JSON_ARRAY({{new_key}}));
  END IF;
END
-- ;;
{{create_trigger}} {{update_trigger}} AFTER UPDATE ON {{table}} FOR EACH ROW
BEGIN
  IF @tandem_applying IS NULL THEN
    IF {{key_unchanged}} THEN
      INSERT INTO tandem_changes (table_name, op, pk)
        VALUES ({{table_literal}}, 'U', JSON_ARRAY({{new_key}}));
    ELSE
      INSERT INTO tandem_changes (table_name, op, pk)
        VALUES ({{table_literal}}, 'D', JSON_ARRAY({{old_key}})),
               ({{table_literal}}, 'I', JSON_ARRAY({{new_key}}));
    END IF;
  END IF;
END
-- ;;
{{create_trigger}} {{delete_trigger}} AFTER DELETE ON {{table}} FOR EACH ROW
BEGIN
  IF @tandem_applying IS NULL THEN
    INSERT INTO tandem_changes (table_name, op, pk)
      VALUES ({{table_literal}}, 'D', JSON_ARRAY({{old_key}}));
  END IF;
END

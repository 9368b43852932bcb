-- The capture trigger of one table: one set-based AFTER trigger (in the
-- table's schema) that writes the key of every inserted, updated or deleted
-- row into tandem.changes, unless the session is the agent's own (session
-- context key tandem.applying set to 1). Rows are told apart by key: a
-- deleted row whose key no inserted row has is a delete ('D', old key), an
-- inserted row whose key no deleted row has is an insert ('I'), a key in both
-- is an update ('U'); so an UPDATE that changes the key is 'D' + 'I'. Text
-- keys compare as bytes, so a change of case is a change of key. The
-- placeholders are filled with names already quoted; the fingerprint in the
-- body tells whether an installed trigger is the one this build writes.
CREATE OR ALTER TRIGGER {{trigger}} ON {{table}}
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
    -- tandem capture trigger {{fingerprint}}
    SET NOCOUNT ON;
    IF CAST(SESSION_CONTEXT(N'tandem.applying') AS int) = 1 RETURN;
    IF NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM deleted) RETURN;
    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT {{table_name}}, 'D', {{old_key_json}}
    FROM deleted AS d
    WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE {{key_match}})
    ORDER BY {{old_key_order}};
    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT {{table_name}}, 'U', {{new_key_json}}
    FROM inserted AS i
    WHERE EXISTS (SELECT 1 FROM deleted AS d WHERE {{key_match}})
    ORDER BY {{new_key_order}};
    INSERT INTO tandem.changes (table_name, op, pk)
    SELECT {{table_name}}, 'I', {{new_key_json}}
    FROM inserted AS i
    WHERE NOT EXISTS (SELECT 1 FROM deleted AS d WHERE {{key_match}})
    ORDER BY {{new_key_order}};
END
-- ;;
-- A trigger someone disabled captures nothing: installing again enables it.
ENABLE TRIGGER {{trigger}} ON {{table}}

-- Removes everything the upgrade steps and capture_trigger.sql created, at any
-- version: first every capture trigger (named tandem_capture_...) on any table
-- of the database, configured or not, then Tandem's tables and schema.
-- Statements are separated by lines holding only "-- ;;"; each is one batch.
DECLARE @trigger nvarchar(600);
DECLARE tandem_triggers CURSOR LOCAL FAST_FORWARD FOR
    SELECT QUOTENAME(s.name) + N'.' + QUOTENAME(tr.name)
    FROM sys.triggers AS tr
    JOIN sys.objects AS o ON o.object_id = tr.parent_id
    JOIN sys.schemas AS s ON s.schema_id = o.schema_id
    WHERE tr.parent_class = 1 AND tr.name LIKE N'tandem[_]capture[_]%';
OPEN tandem_triggers;
FETCH NEXT FROM tandem_triggers INTO @trigger;
WHILE @@FETCH_STATUS = 0
BEGIN
    EXEC (N'DROP TRIGGER ' + @trigger);
    FETCH NEXT FROM tandem_triggers INTO @trigger;
END;
CLOSE tandem_triggers;
DEALLOCATE tandem_triggers;
-- ;;
DROP TABLE IF EXISTS tandem.changes
-- ;;
DROP TABLE IF EXISTS tandem.id_map
-- ;;
DROP TABLE IF EXISTS tandem.version
-- ;;
DROP SCHEMA IF EXISTS tandem

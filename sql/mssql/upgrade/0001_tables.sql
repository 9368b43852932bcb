-- Step 1: Tandem's objects in a SQL Server database (2016 and later):
-- schema tandem with the change table the capture triggers write into, the
-- mapping table of the records the agent created here, and the version
-- row's table. Statements are separated by lines holding only "-- ;;";
-- each is one batch. See sql/README.md for how steps are run.
IF SCHEMA_ID(N'tandem') IS NULL EXEC(N'CREATE SCHEMA tandem')
-- ;;
-- One row per captured insert ('I'), update ('U') or delete ('D'): the
-- primary key of the row as a JSON array. The agent deletes the rows it has
-- consumed, by seq. Names compare exactly (binary collation).
IF OBJECT_ID(N'tandem.changes', N'U') IS NULL
CREATE TABLE tandem.changes (
    seq bigint IDENTITY(1, 1) NOT NULL CONSTRAINT tandem_changes_pk PRIMARY KEY,
    table_name nvarchar(300) COLLATE Latin1_General_BIN2 NOT NULL,
    op char(1) NOT NULL CONSTRAINT tandem_changes_op CHECK (op IN ('I', 'U', 'D')),
    pk nvarchar(max) NOT NULL,
    captured_at datetime2 NOT NULL CONSTRAINT tandem_changes_captured_at DEFAULT SYSUTCDATETIME()
)
-- ;;
-- The records the agent created in this database, and the records they copy;
-- written in the same transaction as the data. Keys compare exactly (binary
-- collation: "a" and "A" are two keys); the indexes are nonclustered because
-- their keys may exceed the 900 bytes of a clustered one.
IF OBJECT_ID(N'tandem.id_map', N'U') IS NULL
CREATE TABLE tandem.id_map (
    pair nvarchar(128) COLLATE Latin1_General_BIN2 NOT NULL,
    source_key nvarchar(400) COLLATE Latin1_General_BIN2 NOT NULL,
    target_key nvarchar(400) COLLATE Latin1_General_BIN2 NOT NULL,
    created_at datetime2 NOT NULL CONSTRAINT tandem_id_map_created_at DEFAULT SYSUTCDATETIME(),
    CONSTRAINT tandem_id_map_pk PRIMARY KEY NONCLUSTERED (pair, source_key),
    CONSTRAINT tandem_id_map_target UNIQUE NONCLUSTERED (pair, target_key)
)
-- ;;
IF OBJECT_ID(N'tandem.version', N'U') IS NULL
CREATE TABLE tandem.version (
    id tinyint NOT NULL CONSTRAINT tandem_version_pk PRIMARY KEY
        CONSTRAINT tandem_version_single CHECK (id = 1),
    version int NOT NULL
)

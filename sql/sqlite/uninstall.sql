-- Removes Tandem's tables (the triggers are dropped before, one by one).
-- Dropping tandem_changes also removes its row from sqlite_sequence.
DROP TABLE IF EXISTS tandem_changes
-- ;;
DROP TABLE IF EXISTS tandem_id_map
-- ;;
DROP TABLE IF EXISTS tandem_version
-- ;;
DROP TABLE IF EXISTS tandem_applying

-- Removes Tandem's tables (the triggers are dropped before, one by one).
DROP TABLE IF EXISTS tandem_changes
-- ;;
DROP TABLE IF EXISTS tandem_id_map
-- ;;
DROP TABLE IF EXISTS tandem_version
-- ;;
DROP TABLE IF EXISTS tandem_applying

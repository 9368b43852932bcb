-- Removes the capture trigger of one configured table.
drop trigger if exists tandem_capture on {{table}};
-- ;;
drop trigger if exists tandem_truncate on {{table}};

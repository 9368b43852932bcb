-- Removes everything the upgrade steps and capture_trigger.sql created, at
-- any version. The capture functions live in schema tandem, so dropping it
-- also drops the triggers of tables that are no longer configured (they
-- depend on those functions).
drop schema if exists tandem cascade;

-- Removes one capture trigger (MySQL 8 has no CREATE OR REPLACE TRIGGER, so
-- install runs this before each CREATE TRIGGER; uninstall runs it for every
-- tandem_ trigger of the database).
DROP TRIGGER IF EXISTS {{trigger}}

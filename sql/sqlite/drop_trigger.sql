-- Removes one capture trigger: install runs this before re-creating a
-- trigger that differs from what this build installs; uninstall runs it for
-- every tandem_ trigger of the database, configured tables or not.
DROP TRIGGER IF EXISTS {{trigger}}

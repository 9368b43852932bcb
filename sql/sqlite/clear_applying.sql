-- Run by every install-triggers, after the upgrade steps. A marker can
-- never be committed; should one be there all the same, no change would be
-- captured: clear it.
DELETE FROM tandem_applying

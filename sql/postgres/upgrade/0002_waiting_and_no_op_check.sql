-- Step 2: the capture functions wake the agent only while it waits, and
-- the change table has no check on op. The functions themselves are not
-- part of any step: every install-triggers writes them again for every
-- configured table (capture_trigger.sql). Taking the change table's lock,
-- this step waits for the writers in flight, whose changes it keeps.
--
-- PostgreSQL parses a check's text again for every insert a trigger makes,
-- which was a quarter of the trigger's cost; only the capture functions
-- write op, and the agent refuses an op it does not know when it reads the
-- row.
alter table tandem.changes drop constraint if exists changes_op_check;
-- ;;
-- The agents waiting for a wake-up: the backend of each one's LISTEN
-- connection, there while it sleeps. A trigger notifies only when someone
-- waits, as every transaction that notifies takes a database-wide lock at
-- commit and holds it until its commit is flushed: notifying on every
-- write serialized the writers' commits. Unlogged: after a server crash
-- nobody is waiting.
create unlogged table if not exists tandem.waiting (
    pid integer primary key,
    since timestamptz not null default now()
);

-- Step 1: Tandem's objects in a PostgreSQL database as version 1 left them
-- (its last release): schema tandem with the change table, the mapping
-- table and the version row's table. Statements are separated by lines
-- holding only "-- ;;"; see sql/README.md for how steps are run.
create schema if not exists tandem;
-- ;;
-- One row per captured insert ('I'), update ('U'), delete ('D') or
-- truncate ('T', an empty array): the primary key of the row as a JSON
-- array. The agent deletes the rows it has consumed, by seq. (Step 2 drops
-- the check on op.)
create table if not exists tandem.changes (
    seq bigint generated always as identity primary key,
    table_name text not null,
    op char(1) not null check (op in ('I', 'U', 'D', 'T')),
    pk jsonb not null,
    captured_at timestamptz not null default clock_timestamp()
);
-- ;;
-- The records the agent created in this database, and the records they copy;
-- written in the same transaction as the data.
create table if not exists tandem.id_map (
    pair text not null,
    source_key text not null,
    target_key text not null,
    created_at timestamptz not null default now(),
    primary key (pair, source_key),
    unique (pair, target_key)
);
-- ;;
create table if not exists tandem.version (
    singleton boolean primary key default true check (singleton),
    version integer not null
);

-- Tandem's objects in a PostgreSQL database, schema version {{version}}.
-- Running this script again changes nothing. Statements are separated by
-- lines holding only "-- ;;".
create schema if not exists tandem;
-- ;;
-- One row per captured insert ('I'), update ('U'), delete ('D') or
-- truncate ('T', an empty array): the primary key of the row as a JSON array. The agent deletes the rows it has
-- consumed, by seq.
create table if not exists tandem.changes (
    seq bigint generated always as identity primary key,
    table_name text not null,
    op char(1) not null,
    pk jsonb not null,
    captured_at timestamptz not null default clock_timestamp()
);
-- ;;
-- Version 1 checked op with a constraint. PostgreSQL parses a check's text
-- again for every insert a trigger makes, which was a quarter of the
-- trigger's cost; only the capture functions write op, and the agent
-- refuses an op it does not know when it reads the row.
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
-- ;;
insert into tandem.version (singleton, version) values (true, {{version}})
on conflict (singleton) do update set version = excluded.version
where tandem.version.version is distinct from excluded.version;

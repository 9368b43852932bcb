-- The capture trigger of one table: a function of its own in schema tandem
-- (named after the table) that writes the key of every inserted, updated or
-- deleted row into tandem.changes, the row trigger tandem_capture that
-- calls it, and the statement trigger tandem_truncate that records a
-- TRUNCATE (op 'T', empty key) so the agent can stop the pair instead of
-- missing it. Writes of sessions that set tandem.applying (the agent's own)
-- are skipped. The first capture of a transaction wakes the agents waiting
-- in tandem.waiting (pg_notify is delivered at commit); an agent that is
-- busy reads the change table again before it waits. The placeholders are
-- filled with names already quoted.
create or replace function {{function}}() returns trigger
language plpgsql as {{tag}}
begin
    if pg_catalog.current_setting('tandem.applying', true) = 'on' then
        return null;
    end if;
    if pg_catalog.current_setting('tandem.woken', true) is distinct from 'on' then
        perform pg_catalog.set_config('tandem.woken', 'on', true);
        if exists (select from tandem.waiting) then
            perform pg_catalog.pg_notify('tandem_changes', '');
        end if;
    end if;
    if tg_op = 'TRUNCATE' then
        insert into tandem.changes (table_name, op, pk)
        values ({{table_name}}, 'T', '[]'::jsonb);
    elsif tg_op = 'INSERT' then
        insert into tandem.changes (table_name, op, pk)
        values ({{table_name}}, 'I', pg_catalog.jsonb_build_array({{new_key_json}}));
    elsif tg_op = 'UPDATE' then
        if row({{old_key}}) is distinct from row({{new_key}}) then
            insert into tandem.changes (table_name, op, pk)
            values ({{table_name}}, 'D', pg_catalog.jsonb_build_array({{old_key_json}}));
            insert into tandem.changes (table_name, op, pk)
            values ({{table_name}}, 'I', pg_catalog.jsonb_build_array({{new_key_json}}));
        else
            insert into tandem.changes (table_name, op, pk)
            values ({{table_name}}, 'U', pg_catalog.jsonb_build_array({{new_key_json}}));
        end if;
    else
        insert into tandem.changes (table_name, op, pk)
        values ({{table_name}}, 'D', pg_catalog.jsonb_build_array({{old_key_json}}));
    end if;
    return null;
end
{{tag}};
-- ;;
-- The trigger itself, created only when the table lacks it (or it calls
-- another function), so running this again changes nothing.
do {{tag}}
begin
    if not exists (
        select 1 from pg_catalog.pg_trigger
        where tgrelid = {{table_regclass}}::regclass
          and tgname = 'tandem_capture'
          and tgfoid = {{function_regprocedure}}::regprocedure
    ) then
        drop trigger if exists tandem_capture on {{table}};
        create trigger tandem_capture
            after insert or update or delete on {{table}}
            for each row execute function {{function}}();
    end if;
    if not exists (
        select 1 from pg_catalog.pg_trigger
        where tgrelid = {{table_regclass}}::regclass
          and tgname = 'tandem_truncate'
          and tgfoid = {{function_regprocedure}}::regprocedure
    ) then
        drop trigger if exists tandem_truncate on {{table}};
        create trigger tandem_truncate
            after truncate on {{table}}
            for each statement execute function {{function}}();
    end if;
end
{{tag}};

-- Records that the step numbered {{version}} ran, in its transaction. Never
-- lowers the number: an older build's install-triggers that read the
-- version before a newer one upgraded leaves the newer number alone.
insert into tandem.version (singleton, version) values (true, {{version}})
on conflict (singleton) do update set version = excluded.version
where tandem.version.version < excluded.version;

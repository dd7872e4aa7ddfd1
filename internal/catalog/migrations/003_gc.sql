-- Garbage collection: a version is first marked deleted (its key is
-- destroyed in the same transaction), then its objects are removed and
-- purged_at records that nothing is left in storage.
alter table versions add column purged_at timestamptz;
create index versions_gc_idx on versions (state, created_at);

-- Starting a backfill over a large catalogue (100,000 titles) streams:
-- discovery records its items in chunks as it goes, so a start that is
-- interrupted resumes where it stopped instead of rediscovering the whole
-- catalogue. (Reserved number 010 on main; renumbered at merge.)

-- A run is 'starting' while discovery records its items; workers ignore it
-- until it becomes 'running'. A second `enqueue backfill start` with the
-- same options, or `enqueue backfill resume`, continues an interrupted one.
alter table backfill_runs drop constraint backfill_runs_state_check;
alter table backfill_runs add constraint backfill_runs_state_check
    check (state in ('starting', 'running', 'paused', 'cancelled', 'done'));

drop index backfill_runs_active_fingerprint;
create unique index backfill_runs_active_fingerprint on backfill_runs (fingerprint)
    where state in ('starting', 'running', 'paused');

-- The last title directory ({prefix}{video}/) whose chunk of items is
-- recorded: discovery visits titles in byte order of their directory, so a
-- resumed start skips everything up to it. Compared with collate "C".
alter table backfill_runs add column discovered_through text collate "C";

-- The batch scheduler asks for the next pending items in id order and
-- whether any remain; status sums bytes by state. Both stay index scans
-- on a 100,000-item run: (run_id, state, id) covers the first, and this
-- one lets status read its sums without touching the table's other
-- columns.
create index backfill_items_run_state_sums_idx on backfill_items (run_id, state)
    include (bytes, segments, est_bytes, started_at, finished_at);

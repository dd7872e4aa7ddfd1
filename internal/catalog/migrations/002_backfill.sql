-- Background re-encryption of the legacy catalogue (see catalog/backfill.go
-- and internal/backfill).

-- A job is either a transcode of an uploaded source or the backfill of one
-- title in one run. A backfill attempt publishes only if the video's current
-- version is still the one it saw when it started (expected_version, 0 for a
-- title that had none): compare-and-swap, see catalog.Publish.
alter table jobs
    add column kind text not null default 'transcode' check (kind in ('transcode', 'backfill')),
    add column expected_version integer;

-- The transcode job whose content a version carries: its own job for a
-- transcode, the job behind the version it re-encrypted for a backfill, NULL
-- for a re-encrypted legacy title. An older transcode finishing late never
-- replaces a newer upload's content, even once that content was re-keyed.
alter table versions add column lineage_job bigint;
update versions set lineage_job = job_id;

create table backfill_runs (
    id            bigserial primary key,
    state         text not null check (state in ('running', 'paused', 'cancelled', 'done')),
    -- What the operator asked for: discovery (prefix, ids, from_db), rekey,
    -- retranscode, source_template, keep_legacy, legacy_prefix, label.
    options       jsonb not null,
    batch_size    integer not null check (batch_size between 1 and 10000),
    max_inflight  integer not null check (max_inflight between 1 and 1000),
    -- Hash of the options and the candidate set: a second start of the same
    -- backfill while this one is active returns this run.
    fingerprint   text not null,
    next_batch    integer not null default 1,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    finished_at   timestamptz
);
create unique index backfill_runs_active_fingerprint on backfill_runs (fingerprint)
    where state in ('running', 'paused');

-- One title of one run. legacy is the playlist object the title was found
-- at (master or single media playlist); est_* are what discovery measured.
create table backfill_items (
    id             bigserial primary key,
    run_id         bigint not null references backfill_runs (id),
    video_id       text not null check (video_id ~ '^[A-Za-z0-9_-]{1,128}$'),
    legacy         text not null default '',
    state          text not null check (state in ('pending', 'queued', 'running', 'done', 'failed', 'skipped')),
    error          text,
    batch          integer,
    attempts       integer not null default 0,
    job_id         bigint references jobs (id),
    version        integer,
    est_bytes      bigint not null default 0,
    est_segments   integer not null default 0,
    bytes          bigint not null default 0,
    segments       integer not null default 0,
    -- When the grace-period garbage collection removed the legacy objects.
    legacy_purged_at timestamptz,
    queued_at      timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    unique (run_id, video_id)
);
create index backfill_items_run_state_idx on backfill_items (run_id, state, id);
create index backfill_items_run_batch_idx on backfill_items (run_id, batch) where state in ('queued', 'running');

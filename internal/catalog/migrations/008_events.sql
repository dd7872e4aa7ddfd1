-- Completion events (issue 11): a transactional outbox for the webhooks.
--
-- Triggers insert an event IN THE TRANSACTION that changes a job's state,
-- deletes a video or finishes a backfill run, so no code path can forget an
-- event and a crash cannot lose one: the change and its event commit or roll
-- back together. internal/webhooks dispatches them (one asynq task per event
-- and URL, at least once) and marks them dispatched; pruned after 7 days.
--
-- id is the Standard Webhooks message id (header webhook-id): the same on
-- every retry and every URL, so receivers deduplicate by it. data is the
-- "data" member of the body; the body's "timestamp" is created_at.
--
-- Every event of a video carries video_id, task_id and the caller's metadata
-- (jobs.metadata) of its transcode job. Backfill jobs make no video events
-- (they re-encrypt content the upload service already knows; a run reports
-- once, as backfill.run.finished).
--
-- video.progress is throttled to the 25 % steps (25, 50, 75) of an attempt:
-- at most three per attempt, since each event costs one delivery per URL
-- with retries for a day; the exact figure is in the job's status.

create table events (
    id            text primary key default ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    type          text not null check (type in ('video.published', 'video.failed', 'video.cancelled', 'video.deleted',
                                                'video.progress', 'backfill.run.finished')),
    video_id      text,
    data          jsonb not null check (jsonb_typeof(data) = 'object'),
    created_at    timestamptz not null default now(),
    dispatched_at timestamptz
);
create index events_undispatched_idx on events (created_at, id) where dispatched_at is null;
create index events_created_idx on events (created_at);

-- One notice per transaction that recorded events (identical payloads are
-- folded), so the dispatcher is pushed, and polls only as a fallback.
create function hlsvault_notify_events() returns trigger language plpgsql as $$
begin
    perform pg_notify('hlsvault_events', '');
    return null;
end
$$;

create trigger events_notify after insert on events
    for each statement execute function hlsvault_notify_events();

create function hlsvault_job_events() returns trigger language plpgsql as $$
declare
    base   jsonb;
    master text;
    dur    double precision;
    step   constant double precision := 25;
begin
    if new.kind <> 'transcode' then
        return null;
    end if;
    base := jsonb_build_object('video_id', new.video_id, 'task_id', new.task_id, 'job_id', new.id,
        'source', new.source, 'attempts', new.attempts, 'metadata', new.metadata);
    if new.state is distinct from old.state then
        if new.state = 'published' then
            select v.master, v.duration_s into master, dur
                from versions v where v.video_id = new.video_id and v.version = new.version;
            insert into events (type, video_id, data) values ('video.published', new.video_id,
                base || jsonb_build_object('state', 'published', 'version', new.version, 'master', master, 'duration', dur));
        elsif new.state = 'failed' then
            insert into events (type, video_id, data) values ('video.failed', new.video_id,
                base || jsonb_build_object('state', 'failed', 'error', new.error));
        elsif new.state = 'cancelled' then
            insert into events (type, video_id, data) values ('video.cancelled', new.video_id,
                base || jsonb_build_object('state', 'cancelled'));
        end if;
    elsif new.state = 'processing' and new.progress < 100
            and floor(new.progress / step) > floor(old.progress / step) then
        insert into events (type, video_id, data) values ('video.progress', new.video_id,
            base || jsonb_build_object('state', 'processing', 'progress', floor(new.progress / step) * step, 'stage', new.stage));
    end if;
    return null;
end
$$;

create trigger jobs_events after update of state, progress on jobs
    for each row execute function hlsvault_job_events();

create function hlsvault_video_events() returns trigger language plpgsql as $$
declare
    tid text;
    md  jsonb;
begin
    if old.deleted_at is null and new.deleted_at is not null then
        select j.task_id, j.metadata into tid, md
            from jobs j where j.video_id = new.id and j.kind = 'transcode' order by j.id desc limit 1;
        insert into events (type, video_id, data) values ('video.deleted', new.id,
            jsonb_build_object('video_id', new.id, 'task_id', tid, 'metadata', coalesce(md, '{}'::jsonb),
                'state', 'deleted', 'deleted_at', new.deleted_at));
    end if;
    return null;
end
$$;

create trigger videos_events after update of deleted_at on videos
    for each row execute function hlsvault_video_events();

create function hlsvault_backfill_run_events() returns trigger language plpgsql as $$
declare
    counts jsonb;
begin
    if new.state in ('done', 'cancelled') and new.state is distinct from old.state then
        -- One index-only pass over the run's items (backfill_items_run_state_idx).
        select coalesce(jsonb_object_agg(s.state, s.n), '{}'::jsonb) into counts
            from (select i.state, count(*) n from backfill_items i where i.run_id = new.id group by i.state) s;
        insert into events (type, video_id, data) values ('backfill.run.finished', null,
            jsonb_build_object('run_id', new.id, 'state', new.state, 'label', new.options -> 'label',
                'items', counts, 'created_at', new.created_at, 'finished_at', new.finished_at));
    end if;
    return null;
end
$$;

create trigger backfill_runs_events after update of state on backfill_runs
    for each row execute function hlsvault_backfill_run_events();

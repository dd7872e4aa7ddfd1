-- The upload service's and the operator's controls (issue 11).
--
-- A job can be cancelled (nothing is published, the task is not retried);
-- it records the stage it is in, when its last attempt finished, the
-- caller's metadata (a small JSON object returned in every status and
-- event) and its per-job options (ladder, preset, priority). A video can be
-- deleted: its keys are destroyed at once (crypto-shredding) and deleted_at
-- is set; its objects are then removed by garbage collection.
--
-- Every change to a job or to a video's current version or deletion is
-- announced on the channel hlsvault_jobs with the video id as payload, so
-- that jobs.Client.Wait is pushed, not polled (NOTIFY is delivered at
-- commit, and identical payloads within one transaction are folded).

alter table jobs drop constraint jobs_state_check;
alter table jobs add constraint jobs_state_check
    check (state in ('queued', 'processing', 'published', 'failed', 'cancelled'));

alter table jobs add column stage text
    check (stage in ('download', 'probe', 'encode', 'upload', 'publish'));
alter table jobs add column finished_at timestamptz;
alter table jobs add column metadata jsonb not null default '{}'::jsonb
    check (jsonb_typeof(metadata) = 'object');
alter table jobs add column options jsonb not null default '{}'::jsonb
    check (jsonb_typeof(options) = 'object');
create index jobs_state_idx on jobs (state, updated_at desc);

alter table videos add column deleted_at timestamptz;
create index videos_updated_idx on videos (updated_at desc, id);

create function hlsvault_notify_job() returns trigger language plpgsql as $$
begin
    perform pg_notify('hlsvault_jobs', new.video_id);
    return null;
end
$$;

create trigger jobs_notify after insert or update on jobs
    for each row execute function hlsvault_notify_job();

create function hlsvault_notify_video() returns trigger language plpgsql as $$
begin
    perform pg_notify('hlsvault_jobs', new.id);
    return null;
end
$$;

create trigger videos_notify after update of current_version, deleted_at on videos
    for each row execute function hlsvault_notify_video();

-- Chunked transcoding (issue 13): a long source is encoded in pieces (one
-- per chunk of video, one for the whole title's audio) that any worker may
-- take. chunked_jobs is the attempt that fans out: its plan, how many
-- pieces it has and how many are done (the completion count), and the
-- version's content keys, wrapped under a KEK, so that a piece on any
-- worker encrypts under the version's keys. chunks is one row per piece:
-- its state, attempts, progress and, once done, what it stored (segments,
-- codecs). Rows live while the attempt runs: the join deletes them when it
-- publishes, a cancelled or failed attempt when it ends, and deleting the
-- video (crypto-shredding) deletes its chunk keys with its other keys.
create table chunked_jobs (
    job_id      bigint not null references jobs (id) on delete cascade,
    version     integer not null,
    plan        jsonb not null,
    pieces      integer not null check (pieces > 0),
    done        integer not null default 0 check (done >= 0 and done <= pieces),
    duration_s  double precision not null,
    created_at  timestamptz not null default now(),
    primary key (job_id, version)
);

create table chunk_keys (
    job_id      bigint not null,
    version     integer not null,
    period      integer not null,
    key_id      text not null,
    kek_id      text not null,
    wrapped     bytea not null,
    starts_at_s double precision not null,
    primary key (job_id, version, period),
    foreign key (job_id, version) references chunked_jobs (job_id, version) on delete cascade
);

create table chunks (
    job_id      bigint not null,
    version     integer not null,
    piece       integer not null check (piece >= 0),
    kind        text not null check (kind in ('video', 'title')),
    state       text not null default 'pending' check (state in ('pending', 'running', 'done')),
    attempts    integer not null default 0,
    media_s     double precision not null check (media_s >= 0),
    progress_s  double precision not null default 0,
    result      jsonb,
    updated_at  timestamptz not null default now(),
    primary key (job_id, version, piece),
    foreign key (job_id, version) references chunked_jobs (job_id, version) on delete cascade
);

create function hlsvault_shred_chunk_keys() returns trigger language plpgsql as $$
begin
    if new.deleted_at is not null and old.deleted_at is null then
        delete from chunked_jobs where job_id in (select id from jobs where video_id = new.id);
    end if;
    return null;
end
$$;

create trigger videos_shred_chunk_keys after update of deleted_at on videos
    for each row execute function hlsvault_shred_chunk_keys();

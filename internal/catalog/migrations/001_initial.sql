-- Videos, the versions published for them, their wrapped content keys, and
-- the jobs that produced them. One transaction switches a video's current
-- version and key (see catalog.Publish).

create table videos (
    id              text primary key check (id ~ '^[A-Za-z0-9_-]{1,128}$'),
    current_version integer,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create table jobs (
    id          bigserial primary key,
    video_id    text not null references videos (id),
    task_id     text not null unique,
    source      text not null,
    state       text not null check (state in ('queued', 'processing', 'published', 'failed')),
    progress    double precision not null default 0,
    error       text,
    version     integer,
    attempts    integer not null default 0,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index jobs_video_idx on jobs (video_id, updated_at desc);

-- state: pending (an attempt is writing objects under prefix), published
-- (current or previously current), superseded (finished but never current),
-- deleted (objects removed by garbage collection).
create table versions (
    video_id      text not null references videos (id),
    version       integer not null check (version > 0),
    job_id        bigint references jobs (id),
    state         text not null check (state in ('pending', 'published', 'superseded', 'deleted')),
    prefix        text not null,
    master        text,
    renditions    jsonb,
    duration_s    double precision,
    created_at    timestamptz not null default now(),
    published_at  timestamptz,
    retired_at    timestamptz,
    deleted_at    timestamptz,
    primary key (video_id, version)
);

alter table videos add constraint videos_current_fk
    foreign key (id, current_version) references versions (video_id, version);

-- Content keys, wrapped under a KEK (format in the README). The raw key is
-- never stored anywhere.
create table content_keys (
    key_id      text primary key check (key_id ~ '^k_[0-9a-f]{32}$'),
    video_id    text not null,
    version     integer not null,
    kek_id      text not null,
    wrapped     bytea not null check (length(wrapped) = 45),
    created_at  timestamptz not null default now(),
    rewrapped_at timestamptz,
    unique (video_id, version),
    foreign key (video_id, version) references versions (video_id, version)
);

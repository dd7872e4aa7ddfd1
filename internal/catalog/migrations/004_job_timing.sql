-- When a job was (last) enqueued and when its first attempt began, so that
-- queue wait can be measured.
alter table jobs add column enqueued_at timestamptz not null default now();
alter table jobs add column started_at timestamptz;

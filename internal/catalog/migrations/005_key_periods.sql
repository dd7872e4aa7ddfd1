-- Key periods: a version is encrypted under a sequence of content keys, one
-- per KEY_PERIOD of media time. period is the 0-based index
-- floor(start / KEY_PERIOD) of the media the key encrypts (periods without
-- any segment have no key), starts_at_s the media time where it begins.
-- Keys stored before this migration are period 0 of their version.
alter table content_keys add column period integer not null default 0 check (period >= 0);
alter table content_keys add column starts_at_s double precision not null default 0 check (starts_at_s >= 0);
alter table content_keys drop constraint content_keys_video_id_version_key;
alter table content_keys add constraint content_keys_video_id_version_period_key unique (video_id, version, period);

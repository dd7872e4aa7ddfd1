-- The live workers and gateways and the key-encryption keys each one holds
-- (heartbeat): `worker rewrap-keys` refuses to rewrap under a KEK that a
-- live one cannot open. Each process upserts its row at start and every
-- heartbeat interval, and deletes it on a clean shutdown; a row whose
-- heartbeat is older than three intervals is not live.
create table kek_holders (
	instance_id  text primary key,
	program      text not null check (program in ('worker', 'gateway')),
	host         text not null,
	pid          integer not null,
	primary_kek  text not null,
	kek_ids      text[] not null,
	started_at   timestamptz not null,
	heartbeat_at timestamptz not null default now()
);
create index kek_holders_heartbeat on kek_holders (heartbeat_at);

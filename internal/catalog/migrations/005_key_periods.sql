-- Placeholder on the secrets branch only: tern needs migrations without
-- gaps, and 005 belongs to the periods branch. Its 005_key_periods.sql
-- replaces this file when the branches are merged.
select 1;

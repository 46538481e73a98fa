-- queuectl schema 2. A worker's current job is derived from the jobs table (the
-- processing job whose worker_id is the worker's), no longer written on every claim
-- and result: two fewer writes per job.

ALTER TABLE workers DROP COLUMN current_job;

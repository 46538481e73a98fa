-- queuectl schema 2. A worker's current job is derived from the jobs table (the
-- processing job whose worker_id is the worker's), no longer written on every claim
-- and result: two fewer writes per job.

ALTER TABLE workers DROP COLUMN current_job;

-- Serves that lookup and recovery's scan of held jobs. A partial index: the planner
-- takes it whatever the statistics say of the state index (with a million finished
-- jobs, ANALYZE made both queries scan the whole table).
CREATE INDEX jobs_processing ON jobs (worker_id) WHERE state = 'processing';

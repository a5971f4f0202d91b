-- Concern: the edges to customers (docs/customers.md; issue 25's leftovers).
-- The export (`GET /api/export/jobs`, store `done_jobs`) reads the jobs in a final state by
-- the time of their last change: without this index it scans every job of the database.
CREATE INDEX jobs_done ON jobs (updated_ms, id)
    WHERE state IN ('completed', 'failed', 'skipped', 'cancelled');
-- A job's dispatch e-mail to its customer is sent once whatever subscription carried it:
-- the notifier looks its event id up before making the link (backend/notify/service.py).
CREATE INDEX notify_outbox_event ON notify_outbox (event_id);

-- The embedded store's readings clustered by (vehicle, device time): sqlite/0029. PostgreSQL's
-- keep their layout (their unique key already holds the time: (vehicle_id, epoch, seq, time)),
-- so this number has nothing to do here. It exists so that each concern carries the same
-- migration number in both dialects.
SELECT 1;

-- Each vehicle's newest CAN values in one row (`last_can`) instead of a row per signal
-- (`last_signal`): a load-test CAN snapshot of 8 signals upserted 8 rows, and the server spent
-- ~39 µs per snapshot on them against ~13 µs for one row merged with `||` (docs/benchmarks.md,
-- "PostgreSQL, session 12"). `signals` maps a signal to [value, device time in ms]; `newest_ms`
-- is the newest of those times, so a snapshot newer than all of them merges without looking
-- inside (backend/store/postgres/readings.py). Backfill never moves a value backwards.
--
-- Both tables are updated in place by every reading of a vehicle: with half of each page free
-- an update stays on its page (a HOT update: no new index entry, less WAL). With full pages
-- (the default) ~20 % of last_signal's updates were HOT and ~100 % at fillfactor 50.
CREATE TABLE last_can (
    vehicle_id  text PRIMARY KEY,
    newest_ms   bigint NOT NULL,
    signals     jsonb NOT NULL
) WITH (fillfactor = 50);
INSERT INTO last_can (vehicle_id, newest_ms, signals)
    SELECT vehicle_id, max(ms), jsonb_object_agg(signal, jsonb_build_array(value, ms))
    FROM (SELECT vehicle_id, signal, value, (extract(epoch FROM time) * 1000)::bigint AS ms
          FROM last_signal) s
    GROUP BY vehicle_id;
DROP TABLE last_signal;

ALTER TABLE last_position SET (fillfactor = 50);
CLUSTER last_position USING last_position_pkey;  -- rewritten with the free space

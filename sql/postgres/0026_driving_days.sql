-- Concern: driver behaviour (docs/driving.md). A vehicle's driving folded per UTC day: the
-- events detected in its readings, its trip starts, its CAN driver changes and its distance
-- per stretch between them (JSON, backend/driving/fold.py). Kept while the readings of the
-- day's window are unchanged (`fingerprint`) and the thresholds and detectors are the same
-- (`signature`); a late reading changes the fingerprint and the day is folded again.
CREATE TABLE driving_days (
    vehicle_id  text NOT NULL,
    day_ms      bigint NOT NULL,        -- the UTC midnight the day begins at
    signature   text NOT NULL,
    fingerprint text NOT NULL,
    result      text NOT NULL,
    folded_ms   bigint NOT NULL,
    PRIMARY KEY (vehicle_id, day_ms)
);

-- One name per quantity (geostream/schema.py POSITION_QUANTITIES): the columns carry the code
-- names, as speed_kmh always did. A rename reaches every native partition and every
-- Timescale chunk of vehicle_telemetry.
ALTER TABLE vehicle_telemetry RENAME COLUMN alt TO alt_m;
ALTER TABLE vehicle_telemetry RENAME COLUMN course TO course_deg;
ALTER TABLE last_position RENAME COLUMN course TO course_deg;

-- Geofences and alerts: on PostgreSQL 0001_init.sql already creates both tables, so this
-- number (sql/sqlite/0002_geofences_alerts.sql there) has nothing to do here. It exists so
-- that each concern carries the same migration number in both dialects.
SELECT 1;

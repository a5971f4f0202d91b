-- The embedded store's readings landing in arrival order before they move into the table
-- clustered by vehicle: sqlite/0031. PostgreSQL keeps its layout, so this number has nothing
-- to do here. It exists so that each concern carries the same migration number in both
-- dialects.
SELECT 1;

-- PostgreSQL keeps each vehicle's newest CAN values in one row (postgres/0030). The embedded
-- store keeps its row per signal (an upsert there is a B-tree write of a page it has in
-- memory, not a statement's executor work), so this number has nothing to do here. It exists
-- so that each concern carries the same migration number in both dialects.
SELECT 1;

-- Concern: service records entered by people (docs/maintenance.md): what the work cost.
-- The work done goes in `note`, who did it in `recorded_by` (0008_service.sql).
ALTER TABLE maintenance_services ADD COLUMN cost double precision;  -- in the fleet's currency

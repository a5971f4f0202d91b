-- Retention by age on a TimescaleDB hypertable: telemetry_maintain() drops the chunks that lie
-- wholly before now - telemetry_policy.retention with drop_chunks(), the Apache build's own
-- mechanism (its background retention policies need the Timescale licence). Native partitions
-- behave as before. Run by the backend's hourly job, `python -m backend migrate`, or cron.
CREATE OR REPLACE FUNCTION telemetry_maintain(now_ timestamptz DEFAULT now())
RETURNS TABLE (created integer, dropped text[]) LANGUAGE plpgsql AS $$
DECLARE
    policy telemetry_policy;
    part record;
    gone text[] := '{}';
BEGIN
    created := 0;
    SELECT * INTO policy FROM telemetry_policy;
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table
                   WHERE partrelid = 'vehicle_telemetry'::regclass) THEN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            EXECUTE 'SELECT coalesce(array_agg(c), ''{}'') FROM drop_chunks('
                    '''vehicle_telemetry'', older_than => $1) c'
                INTO gone USING now_ - policy.retention;
        END IF;
        dropped := gone;
        RETURN NEXT;
        RETURN;
    END IF;
    created := telemetry_ensure_partitions(now_, now_ + policy.premake);
    FOR part IN
        SELECT c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                             'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'vehicle_telemetry'::regclass
    LOOP
        IF part.upper <= now_ - policy.retention THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            gone := gone || part.relname::text;
        END IF;
    END LOOP;
    dropped := gone;
    RETURN NEXT;
END
$$;

-- PostgreSQL + PostGIS schema. Applied by `python -m backend migrate` (one transaction).
-- Time columns are timestamptz here; the Store API speaks epoch milliseconds.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE vehicles (
    vehicle_id  text PRIMARY KEY,
    token_hash  text NOT NULL,                 -- sha256 hex of the vehicle's random token
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz                    -- NULL while the credential is valid
);

-- One row per reading. Partitioned by device time (native ranges, or a Timescale hypertable).
-- The unique key is (vehicle_id, epoch, seq, time): PostgreSQL and Timescale both require the
-- partitioning column in every unique index. It is still exactly-once for re-sent readings,
-- because a re-send is the same journal record with the same device time (protocol.md §5:
-- (vehicle, epoch, q) is never reused). See docs/persistence.md.
DO $$
DECLARE
    timescale boolean := EXISTS (SELECT 1 FROM pg_available_extensions
                                 WHERE name = 'timescaledb')
        AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'
        AND coalesce(current_setting('fleet.timescale', true), 'auto') <> 'off';
    body text := $b$(
        time        timestamptz NOT NULL,          -- device time
        vehicle_id  text NOT NULL,
        epoch       bigint NOT NULL,               -- the agent journal's epoch
        seq         bigint NOT NULL,
        kind        text NOT NULL,                 -- pos | can | evt
        location    geometry(Point, 4326),
        speed_kmh   real,
        course      real,
        alt         real,
        fix         smallint,
        sats        smallint,
        hdop        real,
        signals     jsonb,                         -- CAN signals or event data
        received_at timestamptz NOT NULL,
        CONSTRAINT vehicle_telemetry_key UNIQUE (vehicle_id, epoch, seq, time)
    )$b$;
BEGIN
    IF timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE 'CREATE TABLE vehicle_telemetry ' || body;
        PERFORM create_hypertable('vehicle_telemetry', 'time',
                                  chunk_time_interval => INTERVAL '1 day');
        -- compression and background policies exist only in the Timescale-licensed build;
        -- the Apache build keeps hypertables and drop_chunks (telemetry_maintain, 0006)
        IF current_setting('timescaledb.license', true) = 'timescale' THEN
            ALTER TABLE vehicle_telemetry SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'vehicle_id',
                timescaledb.compress_orderby = 'time DESC, epoch, seq');
            PERFORM add_compression_policy('vehicle_telemetry', INTERVAL '7 days');
        END IF;
    ELSE
        EXECUTE 'CREATE TABLE vehicle_telemetry ' || body || ' PARTITION BY RANGE (time)';
    END IF;
END
$$;
CREATE INDEX vehicle_telemetry_vehicle_time ON vehicle_telemetry (vehicle_id, time DESC);
CREATE INDEX vehicle_telemetry_location ON vehicle_telemetry USING gist (location);

-- Partitioning policy: retention applies to native partitions and to Timescale chunks (0006);
-- premake only to native partitions (Timescale creates chunks as rows arrive).
CREATE TABLE telemetry_policy (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    retention       interval NOT NULL DEFAULT '400 days',  -- partitions wholly older are dropped
    premake         interval NOT NULL DEFAULT '3 days'     -- partitions created this far ahead
);
INSERT INTO telemetry_policy DEFAULT VALUES;

-- Daily partitions named vehicle_telemetry_pYYYYMMDD (UTC days).
CREATE FUNCTION telemetry_ensure_partitions(first timestamptz, last timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date := (first AT TIME ZONE 'UTC')::date;
    created integer := 0;
    name text;
BEGIN
    IF to_regclass('vehicle_telemetry') IS NULL OR NOT EXISTS (
            SELECT 1 FROM pg_partitioned_table
            WHERE partrelid = 'vehicle_telemetry'::regclass) THEN
        RETURN 0;                                  -- hypertable: Timescale makes chunks
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vehicle_telemetry partitions'));
    WHILE day <= (last AT TIME ZONE 'UTC')::date LOOP
        name := format('vehicle_telemetry_p%s', to_char(day, 'YYYYMMDD'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF vehicle_telemetry '
                           'FOR VALUES FROM (%L) TO (%L)', name,
                           (day::timestamp AT TIME ZONE 'UTC'),
                           ((day + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END
$$;

-- The maintenance job: create partitions ahead, drop those wholly older than the retention.
CREATE FUNCTION telemetry_maintain(now_ timestamptz DEFAULT now())
RETURNS TABLE (created integer, dropped text[]) LANGUAGE plpgsql AS $$
DECLARE
    policy telemetry_policy;
    part record;
    gone text[] := '{}';
BEGIN
    created := 0;
    dropped := gone;
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table
                   WHERE partrelid = 'vehicle_telemetry'::regclass) THEN
        RETURN NEXT;                               -- hypertable: Timescale's policies apply
        RETURN;
    END IF;
    SELECT * INTO policy FROM telemetry_policy;
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

-- Newest position per vehicle by device time; backfill never moves it backwards.
CREATE TABLE last_position (
    vehicle_id  text PRIMARY KEY,
    time        timestamptz NOT NULL,
    location    geometry(Point, 4326) NOT NULL,
    speed_kmh   real,
    course      real,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL
);

CREATE TABLE geofences (
    geofence_id text PRIMARY KEY,
    name        text NOT NULL,
    area        geometry(Polygon, 4326) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geofences_area ON geofences USING gist (area);

CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    vehicle_id  text NOT NULL,
    time        timestamptz NOT NULL,          -- device time of the reading that raised it
    kind        text NOT NULL,                 -- e.g. geofence-enter, overspeed
    geofence_id text,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_vehicle_time ON alerts (vehicle_id, time DESC);

CREATE TABLE dead_letter (
    id          bigserial PRIMARY KEY,
    vehicle_id  text NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    reading     jsonb NOT NULL,
    error       text NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (vehicle_id, epoch, seq)
);

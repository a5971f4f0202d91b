-- Concern: proof-of-delivery images through a vehicle's journal (docs/protocol.md §4 "Images",
-- revision 4). The parts of an image being assembled, one row per part (idempotent on
-- vehicle, image and index); deleted once the image is stored as a driver file.
CREATE TABLE image_parts (
    vehicle_id  TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('photo', 'signature')),
    job_id      TEXT,
    count       BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    data        BYTEA NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (vehicle_id, image_id, idx)
);

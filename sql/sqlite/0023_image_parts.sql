-- Concern: proof-of-delivery images through a vehicle's journal (docs/protocol.md §4 "Images",
-- revision 4). The parts of an image being assembled, one row per part (idempotent on
-- vehicle, image and index); deleted once the image is stored as a driver file.
CREATE TABLE image_parts (
    vehicle_id  TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('photo', 'signature')),
    job_id      TEXT,
    count       INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    data        BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (vehicle_id, image_id, idx)
) WITHOUT ROWID;

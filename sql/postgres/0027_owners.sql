-- One owner process per vehicle for its clock-driven alert rules (docs/scaling.md §4, "Who
-- owns a vehicle"; backend/cluster/owners.py). A gateway process is a member while it renews
-- its row; a vehicle's owner is the member holding its connection, or the one that adopted it
-- when it is connected nowhere (its owner's membership expired, or it never connected).
CREATE TABLE cluster_members (
    node        text PRIMARY KEY,           -- host/pid of one gateway process
    renewed_ms  bigint NOT NULL,            -- its last renewal (wall clock)
    expires_ms  bigint NOT NULL             -- dead after this unless renewed
);

CREATE TABLE vehicle_owners (
    vehicle_id  text PRIMARY KEY,
    node        text NOT NULL,              -- the owning process (cluster_members.node)
    connected   boolean NOT NULL,           -- holds a connection of the vehicle now
    since_ms    bigint NOT NULL             -- when it connected, or when it was last connected
);
CREATE INDEX vehicle_owners_node ON vehicle_owners (node);

-- Dispatch proposals (docs/planning.md, "Proposals and approval"): a plan computed on one
-- version of the dispatch state, waiting for a dispatcher. Kept in the store so that any
-- backend node can show and approve it, and a restart keeps it. `body` is the proposal with
-- the snapshot it was computed on (backend/dispatch/planning.py, kept_to_dict).
CREATE TABLE dispatch_proposals (
    id                text PRIMARY KEY,
    created_ms        bigint NOT NULL,
    based_on_version  text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'approved', 'dropped')),
    cause             text NOT NULL,          -- 'on demand', or the event that asked for it
    body              jsonb NOT NULL,
    closed_ms         bigint,
    closed_by         text
);
CREATE INDEX dispatch_proposals_created ON dispatch_proposals (created_ms, id);
CREATE INDEX dispatch_proposals_open ON dispatch_proposals (status) WHERE status = 'open';

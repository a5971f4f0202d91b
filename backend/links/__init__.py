"""Customer tracking links (docs/customers.md): a link per job, its customer view and its live
feed. `model` (the link, its token and expiry, pure), `view` (what the customer sees, pure),
`feed` (the async edge: store, hub, live ETAs, the SSE stream), `limits` (rate limiting)."""

"""Inbound integrations (docs/customers.md): other systems create, update and cancel jobs over
REST (with an `Idempotency-Key` header) or signed webhooks. `signing` (HMAC-SHA256, pure),
`events` (the webhook's body, pure), `idempotency` (a request done once), `apply` (what an
event does, through the dispatch service)."""

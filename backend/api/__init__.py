"""REST route modules (the contract is backend/openapi.yaml; docs/api.md shows how to call it)."""

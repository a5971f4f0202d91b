"""Several nodes behind stateless routers (docs/scaling.md): connection IDs that carry a server
id, the router's decision, the router ⇄ node tunnel."""

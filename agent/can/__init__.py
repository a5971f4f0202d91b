"""CAN bus source: python-can buses and log replay, DBC decoding with cantools, signal selection.

`config.make_sources` builds sources from the agent TOML's `[can]` table; `decoder.CanDecoder`
and `select.Selector` are the sans-IO core; `source` holds the asyncio edge; `cli` implements
`fleet-agent can-decode`. docs/can.md describes the keys, counters and shipped DBC files.
"""

"""Dispatch: jobs, routes and their states (docs/dispatch.md). `model` is the vocabulary."""

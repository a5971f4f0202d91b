"""`python -m backend.loadtest`: the old name of `python -m loadtest` (the load tester moved out
of the backend package; this alias runs it from the source tree, where it lives)."""

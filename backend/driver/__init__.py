"""The driver app's backend (docs/driver.md): actions applied exactly once (actions.py, the
pure core; applier.py, the edge), proof-of-delivery images (images.py), messages."""

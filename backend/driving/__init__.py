"""Driver behaviour: harsh acceleration, braking and cornering, idling, weekly scorecards
(docs/driving.md). Pure detectors (events.py, scorecard.py) and the edge that reads the store
(report.py)."""

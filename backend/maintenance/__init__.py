"""Maintenance insights (docs/maintenance.md): service intervals, trouble codes, signal health.

The rules (intervals.py, dtc.py, health.py) are pure and take `now`; monitor.py is the async
edge that reads the store, runs them and raises alerts through the alert store.
"""

"""Load tester: many simulated vehicles, each a real geostream/1.0 client over QUIC, against
real gateway processes and a real store; `python -m loadtest --help`.

fleet.py is the sans-IO vehicle (readings, live-first batches, acks, latency), client.py one
client process driving many of them, run.py the orchestration and the store check.
"""

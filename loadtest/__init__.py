"""Load tester: many simulated vehicles, each a real geostream/1.0 client over QUIC, against
real gateway processes and a real store; `python -m loadtest --help`.

fleet.py is the sans-IO vehicle (readings, live-first batches, acks, latency), driver.py its
uplink shell (the agent's UplinkMachine), edge.py a client process's sockets and timers for
all its vehicles (one geostream/timer_wheel.py), client.py one client process, run.py the
orchestration and the store check, report.py the figures.
"""

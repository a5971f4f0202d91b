"""Benchmarks: each bench_*.py is a standalone script printing ratios against a baseline
measured in the same run. `make bench` (python -m bench) runs them all."""

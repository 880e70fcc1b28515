"""Benchmarks and chaos runs on the real local broker (see BENCHMARKS.md and docs/performance.md).

`python -m bench run` is the benchmark command (bench/__main__.py); bench/chaos.py is the chaos
run. Nothing here is imported by the worker.
"""

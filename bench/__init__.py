"""Benchmarks: each module exposes `run(scale) -> list[dict]`; `python -m bench` runs them all."""

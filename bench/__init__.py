"""Benchmarks for codectx (run with ``python -m bench``); results go to ``bench/results/``."""

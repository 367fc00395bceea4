"""Benchmarks: ``nox -s bench`` runs ``bench/http1.py``; ``bench.app`` is the app they serve."""

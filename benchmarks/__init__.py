"""Benchmarks of the RATE library: run each as ``python -m benchmarks.<name>`` from the repository root."""

"""Scripts that measure the library: throughput (``python -m benchmarks.speed``) and run aggregation."""

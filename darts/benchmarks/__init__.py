"""Tabular NAS benchmarks: ground-truth scores of every architecture of a space, looked up not trained."""
from darts.benchmarks.nb201 import NB201Benchmark

__all__ = ["NB201Benchmark"]

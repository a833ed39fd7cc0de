"""Gradient strategies: one module per algorithm over the interface of ``darts.strategies.base``."""
